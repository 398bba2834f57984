"""`fakelab serve`: a local web app over the whole loop (FastAPI and one page, nothing fetched
from the internet). Tabs: Animate, Detect, Attack, Stress, Live.

Uploads are size-capped and checked as the CLI checks its inputs (a video must probe and decode,
an image must load); work runs as background jobs (see jobs.py) whose outputs are served for
download from the job's own folder only.
"""

from __future__ import annotations

import importlib.util
import json
import re
import tempfile
import uuid
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from fakelab.errors import FakelabError
from fakelab.webapp.jobs import Job, JobRunner

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif", ".m4v"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
CHECKPOINT_SUFFIXES = {".pt", ".pth", ".p", ".safetensors", ".tar"}
DEFAULT_MAX_UPLOAD_MB = 200
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

# Tabs waiting for other parts of fakelab: (tab, module that provides it, what it will call).
PLANNED = {
    "stress": ("fakelab.stress", "fakelab stress detection|animation"),
    "live": ("fakelab.live", "fakelab live"),
    "cues": ("fakelab.detection.cues", "fakelab.detection.cues.score_video_cues"),
}


class UploadError(FakelabError):
    pass


def available(feature: str) -> bool:
    module = PLANNED[feature][0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def create_app(workdir: Path | None = None, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB) -> FastAPI:
    workdir = Path(workdir or tempfile.mkdtemp(prefix="fakelab-serve-"))
    (workdir / "uploads").mkdir(parents=True, exist_ok=True)
    runner = JobRunner(workdir)
    uploads: dict[str, dict] = {}
    app = FastAPI(title="fakelab", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runner, app.state.workdir = runner, workdir

    def error(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(Exception)
    async def _no_tracebacks(request: Request, exc: Exception):  # never a traceback in the page
        return error(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}", 500)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        html = (Path(__file__).with_name("page.html")).read_text()
        features = {name: available(name) for name in PLANNED}
        return html.replace("__FEATURES__", json.dumps(features)).replace("__MAX_MB__", f"{max_upload_mb:g}")

    @app.post("/api/upload")
    async def upload(request: Request, name: str, kind: str):
        if kind not in ("image", "video", "media", "checkpoint"):
            return error(f"unknown upload kind {kind!r}")
        suffix = Path(name).suffix.lower()
        allowed = {"image": IMAGE_SUFFIXES, "video": VIDEO_SUFFIXES, "media": IMAGE_SUFFIXES | VIDEO_SUFFIXES,
                   "checkpoint": CHECKPOINT_SUFFIXES}[kind]
        if suffix not in allowed:
            return error(f"{name}: not a{'n' if kind[0] in 'i' else ''} {kind} file this app takes ({', '.join(sorted(allowed))})")
        limit = int(max_upload_mb * 1024 * 1024)
        upload_id = uuid.uuid4().hex[:12]
        folder = workdir / "uploads" / upload_id
        folder.mkdir(parents=True)
        path = folder / (SAFE_NAME.sub("_", Path(name).name) or f"upload{suffix}")
        size = 0
        with open(path, "wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size <= limit:
                    handle.write(chunk)
                # Past the limit the rest is read and dropped, so the client gets the answer
                # rather than a reset connection.
        if size > limit:
            path.unlink()
            folder.rmdir()
            return error(f"{name} is {size / 2**20:.1f} MB; uploads are limited to {max_upload_mb:g} MB")
        try:
            described = check_upload(path, kind)
        except FakelabError as problem:
            path.unlink(missing_ok=True)
            folder.rmdir()
            return error(str(problem).replace(str(path), name))
        uploads[upload_id] = {"path": path, "kind": kind, "name": name}
        return {"id": upload_id, "name": name, "description": described, "url": f"/uploads/{upload_id}/{path.name}"}

    @app.get("/uploads/{upload_id}/{filename}")
    def uploaded(upload_id: str, filename: str):
        item = uploads.get(upload_id)
        if item is None or item["path"].name != filename:
            return error("no such upload", 404)
        return FileResponse(item["path"])

    def path_of(upload_id: str | None, what: str, required: bool = True) -> Path | None:
        if not upload_id:
            if required:
                raise UploadError(f"choose {what} first")
            return None
        if upload_id.startswith("job:"):
            _, job_id, filename = upload_id.split(":", 2)
            job = runner.jobs.get(job_id)
            if job is None or not (job.folder / filename).is_file():
                raise UploadError(f"{what}: that result is gone")
            return job.folder / filename
        item = uploads.get(upload_id)
        if item is None:
            raise UploadError(f"{what}: the upload is gone; upload it again")
        return item["path"]

    @app.post("/api/demo")
    def demo_inputs():
        return _demo_inputs(workdir, uploads)

    @app.post("/api/jobs/{kind}")
    async def start(kind: str, request: Request):
        try:
            options = await request.json()
        except ValueError:
            return error("the request is not JSON")
        try:
            if kind == "animate":
                job = _start_animate(runner, options, path_of)
            elif kind == "detect":
                job = _start_detect(runner, options, path_of)
            elif kind == "attack":
                job = _start_attack(runner, options, path_of)
            else:
                return error(f"{kind} is not available in this build", 404)
        except (FakelabError, ValueError, TypeError) as problem:
            return error(str(problem))
        return job.to_json()

    @app.get("/api/jobs/{job_id}")
    def status(job_id: str):
        job = runner.jobs.get(job_id)
        return job.to_json() if job else error("no such job", 404)

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel(job_id: str):
        job = runner.cancel(job_id)
        return job.to_json() if job else error("no such job", 404)

    @app.get("/files/{job_id}/{filename}")
    def download(job_id: str, filename: str, download: bool = False):
        job = runner.jobs.get(job_id)
        if job is None or "/" in filename or filename.startswith("."):
            return error("no such file", 404)
        path = job.folder / filename
        if not path.is_file():
            return error("no such file", 404)
        return FileResponse(path, filename=filename if download else None)

    return app


def check_upload(path: Path, kind: str) -> str:
    """Check an uploaded file the way the CLI checks its inputs; one line describing it."""
    from fakelab.video import load_image, probe_video

    if path.stat().st_size == 0:
        raise UploadError(f"{path} is empty")
    if kind == "checkpoint":
        return f"checkpoint, {path.stat().st_size / 2**20:.1f} MB"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = load_image(path)
        return f"image {image.shape[1]}x{image.shape[0]}"
    info = probe_video(path)
    return f"video {info.width}x{info.height}, {info.frame_count} frames at {info.fps:.3g} fps" + (" with audio" if info.has_audio else "")


def _demo_inputs(workdir: Path, uploads: dict) -> dict:
    """The demo portrait (scikit-image's astronaut) and the generated driving clip, made once."""
    from fakelab import demo
    from fakelab.video import VideoWriter, save_image

    folder = workdir / "uploads" / "demo"
    portrait, driving = folder / "astronaut.png", folder / "driving.mp4"
    if not driving.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        save_image(portrait, demo.astronaut())
        frames = demo.driving_clip(demo.grace_hopper(), round(demo.SECONDS * demo.FPS))
        with VideoWriter(driving, demo.FPS) as writer:
            for frame in frames:
                writer.write(frame)
    result = {}
    for key, path in (("source", portrait), ("driving", driving)):
        upload_id = f"demo-{key}"
        uploads[upload_id] = {"path": path, "kind": key, "name": path.name}
        result[key] = {"id": upload_id, "name": path.name, "description": check_upload(path, "media"),
                       "url": f"/uploads/{upload_id}/{path.name}"}
    return result


def _flag(options: dict, name: str) -> bool:
    return bool(options.get(name))


def _start_animate(runner: JobRunner, options: dict, path_of) -> Job:
    source, driving = path_of(options.get("source"), "a portrait"), path_of(options.get("driving"), "a driving video")
    model = options.get("model") or "landmark-warp"
    command = ["animate", str(source), str(driving), "-o", "animated.mp4", "--model", model]
    if model != "landmark-warp":
        command += ["--checkpoint", str(path_of(options.get("checkpoint"), f"a {model} checkpoint"))]
    if _flag(options, "crop"):
        command += ["--crop", "auto"]
    if _flag(options, "paste_back"):
        command.append("--paste-back")
    if _flag(options, "best_frame"):
        command.append("--find-best-frame")
    if _flag(options, "no_provenance"):
        command.append("--no-provenance")

    def finish(job: Job) -> dict:
        return {"video": f"/files/{job.id}/animated.mp4", "source": f"job:{job.id}:animated.mp4",
                "summary": "".join(job.stdout).strip()}

    return runner.submit("animate", [command], finish)


def _start_detect(runner: JobRunner, options: dict, path_of) -> Job:
    video = path_of(options.get("video"), "a video or image to check")
    checkpoint = path_of(options.get("checkpoint"), "a detector checkpoint", required=False)
    steps = [["provenance", "check", str(video), "--json"]]
    if checkpoint is not None:
        steps.append(["detect", str(video), "--checkpoint", str(checkpoint), "--json", "--report", "report.html",
                      "--frames", str(int(options.get("frames") or 16))])

    def finish(job: Job) -> dict:
        documents = _json_documents("".join(job.stdout))
        provenance = documents[0] if documents else {}
        result = {"provenance": provenance, "cues": None if not available("cues") else "see the cue scores in the report"}
        verdict = "made by fakelab" if provenance.get("made_by_fakelab") else None
        if checkpoint is not None and len(documents) > 1 and documents[1].get("results"):
            scored = documents[1]["results"][0]
            result["detector"] = {"verdict": scored["verdict"], "score": scored["score"], "arch": scored["arch"],
                                  "threshold": scored["threshold"]}
            _plot_timeline(scored, job.folder / "timeline.png")
            result["plot"] = f"/files/{job.id}/timeline.png"
            result["report"] = f"/files/{job.id}/report.html"
            verdict = verdict or scored["verdict"]
        result["verdict"] = verdict or ("no fakelab provenance; give a detector checkpoint for a model score"
                                        if checkpoint is None else "unknown")
        return result

    return runner.submit("detect", steps, finish)


def _start_attack(runner: JobRunner, options: dict, path_of) -> Job:
    video = path_of(options.get("video"), "a video to attack")
    checkpoint = path_of(options.get("checkpoint"), "the detector checkpoint to fool")
    method = options.get("method") or "ifgsm"
    eps = str(options.get("eps") or "8/255")
    frames = int(options.get("frames") or 8)
    command = ["attack", str(video), "--detector", str(checkpoint), "-o", "attacked.mp4", "--method", method,
               "--eps", eps, "--frames", str(frames), "--recompress", "23,30,40"]
    if _flag(options, "no_provenance"):
        command.append("--no-provenance")

    def finish(job: Job) -> dict:
        report = json.loads((job.folder / "attacked.report.json").read_text())
        markdown = (job.folder / "attacked.report.md").read_text()
        return {"video": f"/files/{job.id}/attacked.mp4", "report_md": markdown,
                "summary": "".join(job.stdout).strip(), "report": report.get("summary", {}),
                "download": f"/files/{job.id}/attacked.mp4?download=true"}

    return runner.submit("attack", [command], finish)


def _json_documents(text: str) -> list[dict]:
    """The JSON documents printed one after the other by the job's steps."""
    decoder, documents, index = json.JSONDecoder(), [], 0
    while True:
        start = text.find("{", index)
        if start < 0:
            return documents
        try:
            document, index = decoder.raw_decode(text, start)
        except ValueError:
            index = start + 1
            continue
        documents.append(document)


def _plot_timeline(scored: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = scored["frames"]
    figure, axis = plt.subplots(figsize=(6, 2.4), dpi=100)
    axis.plot([f["time"] for f in frames], [f["probability"] for f in frames], marker="o", markersize=3)
    axis.axhline(scored["threshold"], color="grey", linestyle="--", linewidth=1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("seconds")
    axis.set_ylabel("P(fake)")
    axis.set_title(f"{scored['arch']}: video score {scored['score']:.2f} ({scored['verdict']})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
