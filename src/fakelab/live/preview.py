"""The preview page: MJPEG over HTTP on the loopback interface, with the controls as buttons.

GET /             the page (the stream, buttons, a status line; keys work there too)
GET /stream.mjpg  multipart/x-mixed-replace JPEG stream of the output
GET /frame.jpg    the newest output frame
GET /initial.jpg  the initial (neutral) driving frame of relative motion
GET /status       the session's state as JSON
POST /control/ACTION  one of fakelab.live.session.ACTIONS
"""

from __future__ import annotations

import html
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fakelab.errors import FakelabError
from fakelab.live.session import ACTIONS, encode_jpeg

BOUNDARY = "fakelabframe"
KEYS = {"r": "recalibrate", "n": "next", "p": "previous", "o": "overlay", "m": "mirror", "f": "stats", "q": "quit"}


class PreviewServer:
    """Serves the newest output frame to any number of browsers; also a sink of the live session."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.session = None
        self._frame_ready = threading.Condition()
        self._jpeg: bytes | None = None
        self._sequence = 0
        self._closed = False
        handler = type("PreviewHandler", (_Handler,), {"preview": self})
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise FakelabError(f"cannot serve the preview on {host}:{port} ({error.strerror or error})") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="live-preview", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def attach(self, session) -> None:
        self.session = session
        self._thread.start()

    def send(self, frame, shown) -> None:
        jpeg = encode_jpeg(frame)
        with self._frame_ready:
            self._jpeg = jpeg
            self._sequence += 1
            self._frame_ready.notify_all()

    def next_frame(self, after: int, timeout: float = 0.5) -> tuple[int, bytes | None]:
        with self._frame_ready:
            self._frame_ready.wait_for(lambda: self._sequence > after or self._closed, timeout)
            return self._sequence, self._jpeg

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._frame_ready:
            self._closed = True
            self._frame_ready.notify_all()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    preview: PreviewServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # no per-request lines in the terminal
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/":
            self._reply(HTTPStatus.OK, "text/html; charset=utf-8", page(self.preview.session).encode())
        elif path == "/stream.mjpg":
            self._stream()
        elif path == "/frame.jpg":
            self._image(self.preview.next_frame(-1, 0)[1])
        elif path == "/initial.jpg":
            session = self.preview.session
            self._image(session.initial_jpeg() if session is not None else None)
        elif path == "/status":
            session = self.preview.session
            self._json(HTTPStatus.OK, session.status() if session is not None else {"running": False})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {path}"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?")[0]
        action = path.removeprefix("/control/")
        if not path.startswith("/control/") or action not in ACTIONS:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"unknown control {action!r}", "actions": list(ACTIONS)})
            return
        done = self.preview.session.command(action)
        self._json(HTTPStatus.OK, {"action": action, "done": done})

    def _reply(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: HTTPStatus, data: dict) -> None:
        self._reply(status, "application/json", json.dumps(data).encode())

    def _image(self, jpeg: bytes | None) -> None:
        if jpeg is None:
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no frame yet"})
        else:
            self._reply(HTTPStatus.OK, "image/jpeg", jpeg)

    def _stream(self) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        sequence = 0
        try:
            while not self.preview.closed:
                sequence, jpeg = self.preview.next_frame(sequence)
                if jpeg is None or self.preview.closed:
                    continue
                self.wfile.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                    + jpeg + b"\r\n"
                )
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away


def page(session) -> str:
    title = "fakelab live"
    buttons = "\n".join(
        f'<button id="{action}" title="{html.escape(what)} (key {key})" onclick="control(\'{action}\')">'
        f"{action} <kbd>{key}</kbd></button>"
        for key, action in KEYS.items()
        for what in [ACTIONS[action]]
    )
    keys = json.dumps(KEYS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
 body {{ font-family: system-ui, sans-serif; background: #111; color: #eee; margin: 1em; }}
 img {{ width: min(90vw, 512px); image-rendering: auto; border: 1px solid #444; display: block; }}
 button {{ margin: .3em .2em; padding: .4em .7em; background: #333; color: #eee; border: 1px solid #666; border-radius: 4px; }}
 kbd {{ color: #9cf; }}
 #status {{ font-family: monospace; font-size: 90%; white-space: pre-wrap; margin-top: .5em; }}
</style></head>
<body>
<h1>{title}</h1>
<img id="stream" src="/stream.mjpg" alt="live output">
<div id="controls">{buttons}</div>
<div id="status">starting...</div>
<script>
const keys = {keys};
async function control(action) {{
  const reply = await fetch('/control/' + action, {{method: 'POST'}});
  document.getElementById('status').dataset.last = action;
  return reply.json();
}}
document.addEventListener('keydown', e => {{ if (keys[e.key]) control(keys[e.key]); }});
async function refresh() {{
  try {{
    const s = await (await fetch('/status')).json();
    document.getElementById('status').textContent =
      `${{s.model}} avatar ${{s.avatar + 1}}/${{s.avatars}}  ${{s.fps}} fps  latency p50 ${{s.latency_ms_p50}} ms p95 ${{s.latency_ms_p95}} ms\\n` +
      `shown ${{s.frames_shown}}  dropped ${{s.frames_dropped}}  initial frame ${{s.initial_index}}  face ${{s.face_found ? 'found' : 'lost'}}` +
      (s.glitch_detector ? `  flagged ${{s.frames_flagged}} ${{s.last_flag.join(', ')}}` : '') +
      (s.running ? '' : '\\nstopped');
  }} catch (e) {{ document.getElementById('status').textContent = 'stopped'; }}
}}
setInterval(refresh, 500); refresh();
</script>
</body></html>
"""
