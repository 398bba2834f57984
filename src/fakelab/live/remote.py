"""A remote live worker: the model runs on another machine (a GPU), the laptop only captures and shows.

`fakelab live --serve PORT` runs a `LiveWorker`; `fakelab live --remote HOST:PORT`
uses a `RemoteAvatars` model, which sends each driving face crop as JPEG over a
websocket and shows the JPEG that comes back. Face tracking stays on the laptop,
so the worker gets small crops and the landmarks that go with them.

Every message is binary: a 4-byte big-endian header length, a JSON header, then
a payload (an image, or nothing). Requests: hello; prepare (payload: the avatar
as PNG); recalibrate and render (payload: the driving crop as JPEG, header:
avatar number and landmarks). Replies: hello (size, model), ok, frame (payload:
JPEG), error (message).
"""

from __future__ import annotations

import json
import struct
import threading

import cv2
import numpy as np

from fakelab.errors import FakelabError
from fakelab.live.session import decode_jpeg, encode_jpeg

MAX_MESSAGE = 32 * 2**20
CONNECT_TIMEOUT_S = 5.0


def pack(header: dict, payload: bytes = b"") -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack(">I", len(encoded)) + encoded + payload


def unpack(message: bytes) -> tuple[dict, bytes]:
    if not isinstance(message, bytes) or len(message) < 4:
        raise ValueError("not a live-worker message")
    (length,) = struct.unpack(">I", message[:4])
    return json.loads(message[4 : 4 + length]), message[4 + length :]


def encode_png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


def _landmarks(header: dict) -> np.ndarray | None:
    value = header.get("landmarks")
    return None if value is None else np.asarray(value, dtype=np.float64).reshape(-1, 2)


def parse_address(address: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """HOST:PORT or PORT, with a port in 0..65535."""
    host, _, port = address.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise FakelabError(f"'{address}' is not HOST:PORT with a port number 0-65535")
    return host.strip("[]") or default_host, number


class LiveWorker:
    """Serves an avatar model to `--remote` clients; each connection has its own avatars."""

    def __init__(self, model, host: str = "127.0.0.1", port: int = 0):
        from websockets.sync.server import serve

        self.model = model
        try:
            self._server = serve(self._handle, host, port, max_size=MAX_MESSAGE, compression=None)
        except OSError as error:
            raise FakelabError(f"cannot serve the live worker on {host}:{port} ({error.strerror or error})") from None
        self.host, self.port = self._server.socket.getsockname()[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-worker", daemon=True)
        self.frames = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> LiveWorker:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(1.0)

    def _handle(self, connection) -> None:
        from websockets.exceptions import ConnectionClosed

        avatars = {}
        try:
            for message in connection:
                connection.send(self._reply(avatars, message))
        except ConnectionClosed:
            pass

    def _reply(self, avatars: dict, message) -> bytes:
        try:
            header, payload = unpack(message)
            kind = header.get("type")
            if kind == "hello":
                return pack({"type": "hello", "size": list(self.model.size), "model": self.model.name})
            if kind == "prepare":
                avatars[int(header["avatar"])] = self.model.prepare(_decoded(payload))
                return pack({"type": "ok"})
            avatar = avatars.get(int(header.get("avatar", -1)))
            if avatar is None:
                return pack({"type": "error", "message": "that avatar was not prepared on the worker"})
            if kind == "recalibrate":
                avatar.recalibrate(_decoded(payload), _landmarks(header))
                return pack({"type": "ok"})
            if kind == "render":
                frame = avatar.render(_decoded(payload), _landmarks(header))
                self.frames += 1
                return pack({"type": "frame"}, encode_jpeg(frame, quality=90))
            return pack({"type": "error", "message": f"unknown request {kind!r}"})
        except FakelabError as error:
            return pack({"type": "error", "message": str(error)})
        except (ValueError, KeyError, TypeError) as error:
            return pack({"type": "error", "message": f"bad request ({error})"})


def _decoded(payload: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("the payload is not an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class RemoteAvatars:
    """An avatar model (fakelab.live.avatars.AvatarModel) that runs on a `LiveWorker`."""

    def __init__(self, address: str):
        from websockets.sync.client import connect

        host, port = parse_address(address)
        self.address = f"{host}:{port}"
        try:
            self._connection = connect(
                f"ws://{host}:{port}", max_size=MAX_MESSAGE, open_timeout=CONNECT_TIMEOUT_S, compression=None
            ).__enter__()  # held open for the session; close() leaves it
        except (OSError, TimeoutError) as error:
            reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
            raise FakelabError(f"cannot reach the live worker at {self.address} ({reason})") from None
        except Exception as error:  # websockets' handshake errors
            raise FakelabError(f"{self.address} is not a live worker ({error})") from None
        self._lock = threading.Lock()
        self._count = 0
        hello, _ = self.request({"type": "hello"})
        self.size = tuple(hello["size"])
        self.name = f"{hello['model']} on {self.address}"

    def request(self, header: dict, payload: bytes = b"") -> tuple[dict, bytes]:
        from websockets.exceptions import ConnectionClosed

        with self._lock:
            try:
                self._connection.send(pack(header, payload))
                reply, data = unpack(self._connection.recv())
            except ConnectionClosed:
                raise FakelabError(f"the live worker at {self.address} closed the connection") from None
        if reply.get("type") == "error":
            raise FakelabError(f"live worker {self.address}: {reply.get('message')}")
        return reply, data

    def prepare(self, source: np.ndarray) -> RemoteAvatar:
        number = self._count
        self._count += 1
        self.request({"type": "prepare", "avatar": number}, encode_png(source))
        return RemoteAvatar(self, number)

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


class RemoteAvatar:
    def __init__(self, model: RemoteAvatars, number: int):
        self.model = model
        self.number = number

    def _header(self, kind: str, landmarks: np.ndarray | None) -> dict:
        return {"type": kind, "avatar": self.number,
                "landmarks": None if landmarks is None else np.round(landmarks, 2).tolist()}

    def recalibrate(self, driving: np.ndarray, landmarks: np.ndarray | None = None) -> None:
        self.model.request(self._header("recalibrate", landmarks), encode_jpeg(driving, quality=90))

    def render(self, driving: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        _, payload = self.model.request(self._header("render", landmarks), encode_jpeg(driving, quality=90))
        return decode_jpeg(payload)
