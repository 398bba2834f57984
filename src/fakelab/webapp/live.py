"""The Live tab: `fakelab live` as a background job, its preview relayed through the app.

The child serves its MJPEG preview on a free loopback port; the app relays that stream, the
status and the controls under /api/live/JOB/..., so the page never talks to anything but the
app (and a public `--host` exposes the app alone, not the child). Stop is SIGTERM, on which
`fakelab live` closes its outputs normally: a recording is kept (with its provenance).
"""

from __future__ import annotations

import glob
import json
import re
import socket
import sys
import urllib.error
import urllib.request

from fastapi.responses import StreamingResponse

from fakelab.errors import FakelabError
from fakelab.webapp.jobs import Job, JobRunner

CONTROLS = ("recalibrate", "next", "previous", "overlay", "mirror", "stats")
STREAM_URL = re.compile(r"^(rtsp|rtmp|http|https|udp|tcp|srt)://\S+$", re.IGNORECASE)
DEFAULT_MINUTES = 10  # a preview left open in a forgotten tab stops by itself


class LiveError(FakelabError):
    pass


def cameras() -> dict:
    """What the page says about cameras before anything starts (Linux lists /dev/video*)."""
    if sys.platform.startswith("linux"):
        devices = sorted(glob.glob("/dev/video*"))
        if not devices:
            return {"known": True, "devices": [], "message": "No camera on this machine (no /dev/video*): "
                    "upload a video or give a stream URL."}
        return {"known": True, "devices": devices, "message": f"Cameras: {', '.join(devices)}"}
    return {"known": False, "devices": [], "message": "Give a camera number (0 is the first camera)."}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(runner: JobRunner, options: dict, path_of) -> Job:
    avatar = path_of(options.get("source"), "an avatar portrait")
    kind = options.get("input_kind") or "camera"
    if kind == "camera":
        camera = str(options.get("camera", "0")).strip()
        if not camera.isdigit():
            raise LiveError(f"a camera is a number (0 is the first one), got {camera!r}")
        where = camera
    elif kind == "url":
        where = str(options.get("url") or "").strip()
        if not STREAM_URL.match(where):
            raise LiveError(f"not a stream URL (rtsp://, http://, udp://...): {where!r}")
    elif kind == "video":
        where = str(path_of(options.get("video"), "a video to play as the camera"))
    else:
        raise LiveError(f"unknown input {kind!r} (camera, url or video)")
    from fakelab.live.avatars import LIVE_MODELS  # here: importing fakelab.live loads torch (2 s)

    model = options.get("model") or "portrait"
    if model not in LIVE_MODELS:
        raise LiveError(f"unknown live model {model!r} (one of {', '.join(LIVE_MODELS)})")
    minutes_text = options.get("minutes") or DEFAULT_MINUTES
    try:
        minutes = float(minutes_text)
    except (TypeError, ValueError):
        raise LiveError(f"minutes must be a number, got {minutes_text!r}") from None
    if not 0 < minutes <= 240:
        raise LiveError(f"minutes must be between 0 and 240, got {minutes:g}")
    port = free_port()
    command = ["live", "--source", str(avatar), "--input", where, "--model", model, "--output", "preview",
               "--port", str(port), "--duration", f"{minutes * 60:g}"]
    if model == "fomm":
        command += ["--checkpoint", str(path_of(options.get("checkpoint"), "a FOMM checkpoint"))]
    recording = bool(options.get("record"))
    if recording:
        command += ["--output", "live.mp4"]
        if options.get("no_provenance"):
            command.append("--no-provenance")

    def finish(job: Job) -> dict:
        result = {"summary": "".join(job.stdout).strip()}
        if recording and (job.folder / "live.mp4").is_file():
            result.update(video=f"/files/{job.id}/live.mp4", download=f"/files/{job.id}/live.mp4?download=true",
                          source=f"job:{job.id}:live.mp4")
            if (job.folder / "live.flags.jsonl").is_file():
                result["flags"] = f"/files/{job.id}/live.flags.jsonl?download=true"
        return result

    def measure(job: Job) -> None:
        # The child prints where its preview is once it serves; then the page may open the relay.
        if job.info.get("stream") is None and any("preview at http" in line for line in job.stdout):
            job.info["stream"] = f"/api/live/{job.id}/stream.mjpg"

    job = runner.submit("live", [command], finish, exclusive=False, stop_keeps_output=True, measure=measure,
                        info={"port": port, "stream": None})
    return job


def _preview_port(runner: JobRunner, job_id: str) -> int | None:
    """The child's preview port once it serves, else None."""
    job = runner.jobs.get(job_id)
    if job is None or job.kind != "live" or job.state != "running":
        return None
    job.measure(job)
    return job.info["port"] if job.info.get("stream") else None


def add_routes(app, runner: JobRunner, error) -> None:
    @app.get("/api/live/cameras")
    def list_cameras():
        return cameras()

    @app.get("/api/live/{job_id}/stream.mjpg")
    def stream(job_id: str):
        port = _preview_port(runner, job_id)
        if port is None:
            return error("that live preview is not running", 404)
        try:
            child = urllib.request.urlopen(f"http://127.0.0.1:{port}/stream.mjpg", timeout=10)
        except (urllib.error.URLError, OSError) as problem:
            return error(f"the live preview does not answer ({problem})", 502)

        def relay():
            # Chunks as they come (read1: no waiting for a full buffer), until the child stops.
            with child:
                try:
                    while chunk := child.read1(1 << 16):
                        yield chunk
                except OSError:
                    return

        return StreamingResponse(relay(), media_type=child.headers["Content-Type"],
                                 headers={"Cache-Control": "no-store"})

    def ask_child(job_id: str, path: str, post: bool = False):
        """The child's JSON answer at `path`, or one line saying why there is none."""
        port = _preview_port(runner, job_id)
        if port is None:
            return error("that live preview is not running", 404)
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=b"" if post else None,
                                         method="POST" if post else "GET")
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return json.loads(answer.read())
        except (urllib.error.URLError, OSError, ValueError) as problem:
            return error(f"the live preview does not answer ({problem})", 502)

    @app.get("/api/live/{job_id}/status")
    def status(job_id: str):
        return ask_child(job_id, "/status")

    @app.post("/api/live/{job_id}/control/{action}")
    def control(job_id: str, action: str):
        if action not in CONTROLS:
            return error(f"unknown control {action!r} ({', '.join(CONTROLS)}; Stop ends the preview)")
        return ask_child(job_id, f"/control/{action}", post=True)
