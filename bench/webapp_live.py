"""Is the web app's Live preview smooth? The relayed stream against the child's own, side by side.

Starts `fakelab serve`, starts a Live job through its API (an avatar driven by a clip played as
a 25 fps camera, ../shared/media/d11.mp4 and s7.jpg by default), then reads the MJPEG stream for
--seconds at a time, in turns A/B/A/B: A straight from the `fakelab live` child's preview port,
B through the app's relay (/api/live/JOB/stream.mjpg, what the page shows). Printed per turn:
frames received per second, the gaps between frames (p50, p95, max) and the bytes per frame.
The relay adds a hop on the same machine; equal rates and gaps say it costs the page nothing.

    PYTHONPATH=src nice -n 10 .venv/bin/python bench/webapp_live.py
    PYTHONPATH=src .venv/bin/python bench/webapp_live.py --model landmark-warp --seconds 15
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

MEDIA = Path(__file__).resolve().parents[1] / ".." / "shared" / "media"
BOUNDARY = b"--fakelabframe"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def api(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def upload(url: str, path: Path, kind: str) -> str:
    request = urllib.request.Request(f"{url}/api/upload?name={path.name}&kind={kind}", data=path.read_bytes(), method="POST")
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())["id"]


def read_stream(stream_url: str, seconds: float) -> dict:
    """Frames received in `seconds`, and the gaps between their arrivals."""
    arrivals, sizes, pending = [], [], b""
    with urllib.request.urlopen(stream_url, timeout=30) as stream:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            chunk = stream.read1(1 << 16)
            if not chunk:
                break
            pending += chunk
            while (end := pending.find(BOUNDARY, len(BOUNDARY))) >= 0:  # a whole part has arrived
                arrivals.append(time.perf_counter())
                sizes.append(end)
                pending = pending[end:]
    gaps = np.diff(arrivals) * 1000
    return {"fps": round((len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), 2) if len(arrivals) > 1 else 0.0,
            "frames": len(arrivals), "gap_ms_p50": round(float(np.percentile(gaps, 50)), 1) if len(gaps) else None,
            "gap_ms_p95": round(float(np.percentile(gaps, 95)), 1) if len(gaps) else None,
            "gap_ms_max": round(float(gaps.max()), 1) if len(gaps) else None,
            "kb_per_frame": round(float(np.mean(sizes)) / 1024, 1) if sizes else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=MEDIA / "s7.jpg")
    parser.add_argument("--video", type=Path, default=MEDIA / "d11.mp4")
    parser.add_argument("--model", default="portrait")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--turns", type=int, default=4, help="A/B turns in all (default 4: A B A B)")
    args = parser.parse_args()

    port = free_port()
    workdir = tempfile.mkdtemp(prefix="fakelab-bench-serve-")
    server = subprocess.Popen([sys.executable, "-m", "fakelab", "serve", "--port", str(port), "--workdir", workdir],
                              stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                time.sleep(0.3)
        job = api(f"{url}/api/jobs/live", {
            "source": upload(url, args.source, "image"), "input_kind": "video", "video": upload(url, args.video, "video"),
            "model": args.model})
        while not job["info"].get("stream"):
            if job["state"] not in ("queued", "running"):
                raise SystemExit(f"the live job ended: {job['state']}: {job['message']}")
            time.sleep(0.5)
            job = api(f"{url}/api/jobs/{job['id']}")
        time.sleep(3)  # past the warm-up
        direct = f"http://127.0.0.1:{job['info']['port']}/stream.mjpg"
        relayed = url + job["info"]["stream"]
        print(f"load average at start: {os.getloadavg()[0]:.2f}; model {args.model}; {args.video.name} drives {args.source.name}")
        rows = []
        for turn in range(args.turns):
            label, stream = ("A direct", direct) if turn % 2 == 0 else ("B relayed", relayed)
            row = {"turn": label, **read_stream(stream, args.seconds)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        status = api(f"{url}/api/live/{job['id']}/status")
        print(f"the live session: {status['fps']} fps shown, latency p50 {status['latency_ms_p50']} ms, "
              f"p95 {status['latency_ms_p95']} ms; load average at end: {os.getloadavg()[0]:.2f}")
        api(f"{url}/api/jobs/{job['id']}/cancel", {})
        for key in ("fps", "gap_ms_p95"):
            a = [r[key] for r in rows if r["turn"].startswith("A")]
            b = [r[key] for r in rows if r["turn"].startswith("B")]
            print(f"{key}: direct {np.mean(a):.2f}, relayed {np.mean(b):.2f} (relayed / direct {np.mean(b) / np.mean(a):.3f})")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
