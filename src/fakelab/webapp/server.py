"""`fakelab serve`: a local web app over the whole loop (FastAPI and one page, nothing fetched
from the internet). Tabs: Animate, Detect, Attack, Stress, Live.

Uploads are size-capped and checked as the CLI checks its inputs (a video must probe and decode,
an image must load); work runs as background jobs (see jobs.py) whose outputs are served for
download from the job's own folder only. A live preview is a `fakelab live` child whose MJPEG
stream the app relays (live.py), so the page talks to the app alone.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import uuid
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from fakelab.errors import FakelabError
from fakelab.webapp import live
from fakelab.webapp.jobs import Job, JobRunner

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif", ".m4v"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
CHECKPOINT_SUFFIXES = {".pt", ".pth", ".p", ".safetensors", ".tar"}
DEFAULT_MAX_UPLOAD_MB = 200
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

# The models of the Animate tab, as `fakelab animate --model` names them; those that need weights say which.
ANIMATION_MODELS = {"portrait": None, "landmark-warp": None, "fomm": "a FOMM checkpoint",
                    "landmarks2face": "a landmarks2face generator (latest_net_G.pth)"}
# The Stress tab's sweep when the page sends no choice: a few perturbations at three levels on a
# few frames, which finishes in about half a minute on 2 cores (landmark-warp, the 256x256 demo clip).
STRESS_PERTURBATIONS = ("blur", "compression", "hand")
STRESS_LEVELS = "1,3,5"
STRESS_MAX_FRAMES = {"animation": 8, "detection": 24}
STRESS_PLOTS = {"animation": ("quality.png", "pose.png"), "detection": ("auc.png", "fake_score.png", "real_score.png")}


class UploadError(FakelabError):
    pass


def create_app(workdir: Path | None = None, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB) -> FastAPI:
    workdir = Path(workdir or tempfile.mkdtemp(prefix="fakelab-serve-"))
    (workdir / "uploads").mkdir(parents=True, exist_ok=True)
    runner = JobRunner(workdir)
    uploads: dict[str, dict] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        runner.shutdown()  # no job (a live preview above all) outlives the server

    app = FastAPI(title="fakelab", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.runner, app.state.workdir = runner, workdir

    def error(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(Exception)
    async def _no_tracebacks(request: Request, exc: Exception):  # never a traceback in the page
        return error(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}", 500)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        from fakelab.stress.perturbations import PERTURBATIONS

        html = (Path(__file__).with_name("page.html")).read_text()
        perturbations = [{"name": p.name, "description": p.description, "levels": len(p.parameters),
                          "default": p.name in STRESS_PERTURBATIONS} for p in PERTURBATIONS.values()]
        return (html.replace("__PERTURBATIONS__", json.dumps(perturbations))
                .replace("__MAX_MB__", f"{max_upload_mb:g}"))

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
            elif kind == "stress":
                job = _start_stress(runner, options, path_of)
            elif kind == "live":
                job = live.start(runner, options, path_of)
            else:
                return error(f"there is no {kind!r} job (animate, detect, attack, stress, live)", 404)
        except (FakelabError, ValueError, TypeError) as problem:
            return error(str(problem))
        return job.to_json()

    @app.get("/api/jobs/{job_id}")
    def status(job_id: str):
        job = runner.jobs.get(job_id)
        return job.to_json() if job else error("no such job", 404)

    live.add_routes(app, runner, error)

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel(job_id: str):
        job = runner.cancel(job_id)
        return job.to_json() if job else error("no such job", 404)

    @app.get("/files/{job_id}/{filename:path}")
    def download(job_id: str, filename: str, download: bool = False):
        job = runner.jobs.get(job_id)
        parts = filename.split("/")
        if job is None or any(not part or part.startswith(".") for part in parts):
            return error("no such file", 404)
        path = job.folder.joinpath(*parts)
        if not path.is_file():
            return error("no such file", 404)
        return FileResponse(path, filename=parts[-1] if download else None)

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
    model = options.get("model") or "portrait"  # the CLI's default without a checkpoint
    if model not in ANIMATION_MODELS:
        raise UploadError(f"unknown model {model!r} (one of {', '.join(ANIMATION_MODELS)})")
    command = ["animate", str(source), str(driving), "-o", "animated.mp4", "--model", model]
    if ANIMATION_MODELS[model]:
        command += ["--checkpoint", str(path_of(options.get("checkpoint"), ANIMATION_MODELS[model]))]
    if model in ("fomm", "landmark-warp"):  # the portrait model always works on the face and pastes back
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
    """Provenance first, then the cue detector (videos; no weights), then a CNN detector when a
    checkpoint is given. A step that cannot score the file (no face, an image for the cues) is
    reported beside the others' results."""
    from fakelab.detection.pipeline import is_image

    video = path_of(options.get("video"), "a video or image to check")
    checkpoint = path_of(options.get("checkpoint"), "a detector checkpoint", required=False)
    steps = [["provenance", "check", str(video), "--json"]]
    cues_step = cnn_step = None
    if not is_image(video):
        cues_step = len(steps)
        steps.append(["detect", str(video), "--json", "--report", "cues-report.html"])
    if checkpoint is not None:
        cnn_step = len(steps)
        steps.append(["detect", str(video), "--checkpoint", str(checkpoint), "--json", "--report", "report.html",
                      "--frames", str(int(options.get("frames") or 16))])

    def document(job: Job, step: int | None) -> dict:
        if step is None or step in job.step_errors or step >= len(job.step_stdout):
            return {}
        documents = _json_documents("".join(job.step_stdout[step]))
        return documents[0] if documents else {}

    def finish(job: Job) -> dict:
        provenance = document(job, 0)
        result: dict = {"provenance": provenance, "reports": []}
        verdicts = []
        if cues_step is not None:
            cues = (document(job, cues_step).get("results") or [None])[0]
            if cues is None:
                result["cues_error"] = job.step_errors.get(cues_step, "the cue detector gave no result")
            else:
                result["cues"] = {key: cues[key] for key in ("verdict", "probability_fake", "threshold", "cues",
                                                             "contributions", "drivers", "frames_analysed")}
                _plot_cue_timeline(cues, job.folder / "cues-timeline.png")
                result["cues_plot"] = f"/files/{job.id}/cues-timeline.png"
                result["reports"].append({"name": "cue report", "url": f"/files/{job.id}/cues-report.html"})
                verdicts.append(f"{cues['verdict']} by the cue detector (P(fake) {cues['probability_fake']:.2f})")
        else:
            result["cues_error"] = "the cue detector needs a video; upload a detector checkpoint to score an image"
        if cnn_step is not None:
            scored = (document(job, cnn_step).get("results") or [None])[0]
            if scored is None:
                result["detector_error"] = job.step_errors.get(cnn_step, "the detector gave no result")
            else:
                result["detector"] = {"verdict": scored["verdict"], "score": scored["score"], "arch": scored["arch"],
                                      "threshold": scored["threshold"]}
                _plot_timeline(scored, job.folder / "timeline.png")
                result["plot"] = f"/files/{job.id}/timeline.png"
                result["reports"].insert(0, {"name": "detector report", "url": f"/files/{job.id}/report.html"})
                verdicts.append(f"{scored['verdict']} by {scored['arch']} (score {scored['score']:.2f})")
        if provenance.get("made_by_fakelab"):
            result["verdict"] = "made by fakelab"
        elif verdicts:
            result["verdict"] = "; ".join(verdicts)
        else:
            result["verdict"] = "no fakelab provenance; no detector could score it"
        return result

    return runner.submit("detect", steps, finish, may_fail=tuple(i for i in (cues_step, cnn_step) if i is not None))


def _start_stress(runner: JobRunner, options: dict, path_of) -> Job:
    """A small `fakelab stress animation|detection` sweep; its plots, table and report are the result."""
    from fakelab.stress.perturbations import PERTURBATIONS

    kind = options.get("kind") or "animation"
    if kind not in STRESS_PLOTS:
        raise UploadError(f"unknown stress test {kind!r} (animation or detection)")
    names = options.get("perturbations") or list(STRESS_PERTURBATIONS)
    if not isinstance(names, list):
        raise UploadError(f"perturbations are a list of names, got {names!r}")
    unknown = [name for name in names if name not in PERTURBATIONS]
    if unknown:
        raise UploadError(f"unknown perturbation {unknown[0]!r} (known: {', '.join(PERTURBATIONS)})")
    levels_text = str(options.get("levels") or STRESS_LEVELS)
    try:
        levels = sorted({int(part) for part in levels_text.split(",") if part.strip()})
    except ValueError:
        raise UploadError(f"levels are whole numbers separated by commas, e.g. 1,3,5; got {levels_text!r}") from None
    if not levels or levels[0] < 1 or levels[-1] > 5:
        raise UploadError(f"levels run from 1 to 5, got {levels_text!r}")
    frames_text = options.get("max_frames") or STRESS_MAX_FRAMES[kind]
    try:
        max_frames = int(frames_text)
    except (TypeError, ValueError):
        raise UploadError(f"frames must be a whole number, got {frames_text!r}") from None
    if not 1 <= max_frames <= 300:
        raise UploadError(f"frames must be between 1 and 300, got {max_frames}")
    job_id = uuid.uuid4().hex[:12]
    folder = runner.folder_for(job_id)
    command = ["stress", kind]
    if kind == "animation":
        command += ["--driving", str(path_of(options.get("driving"), "a driving video"))]
        source = path_of(options.get("source"), "a portrait", required=False)
        if source is not None:
            command += ["--source", str(source)]
        model = options.get("model") or "landmark-warp"  # the fastest (the CLI's default is portrait)
        if model not in ANIMATION_MODELS:
            raise UploadError(f"unknown model {model!r} (one of {', '.join(ANIMATION_MODELS)})")
        command += ["--model", model]
        if model == "fomm":
            command += ["--checkpoint", str(path_of(options.get("checkpoint"), "a FOMM checkpoint"))]
        elif ANIMATION_MODELS[model]:
            raise UploadError(f"the stress test does not run {model}")
    else:
        clips = {}
        for label in ("real", "fake"):
            chosen = options.get(label) or []
            if not isinstance(chosen, list) or not chosen:
                raise UploadError(f"choose at least one {label} clip")
            clips[label] = [path_of(item, f"a {label} clip") for item in chosen]
        checkpoint = path_of(options.get("checkpoint"), "a detector checkpoint", required=False)
        # The sweep reads folders: each one gets links to the chosen clips.
        for label, paths in clips.items():
            target = folder / "inputs" / label
            target.mkdir(parents=True, exist_ok=True)
            for index, path in enumerate(paths):
                (target / f"{index:03d}-{path.name}").symlink_to(path)
            command += [f"--{label}", str(target)]
        command += ["--checkpoint", str(checkpoint)] if checkpoint is not None else ["--method", "cues"]
    command += ["-o", "out", "--levels", ",".join(map(str, levels)), "--max-frames", str(max_frames)]
    for name in names:
        command += ["--perturbation", name]
    cells = 1 + sum(len([level for level in levels if level in PERTURBATIONS[name].levels]) for name in names)

    def measure(job: Job) -> float:
        # The sweep writes one file per finished cell (its tqdm bars are off without a terminal).
        done = len(list((job.folder / "out" / "cells").glob("*.json"))) if (job.folder / "out" / "cells").is_dir() else 0
        return min(0.99, done / cells)

    def finish(job: Job) -> dict:
        out = job.folder / "out"
        return {
            "kind": kind,
            "plots": [f"/files/{job.id}/out/{name}" for name in STRESS_PLOTS[kind] if (out / name).is_file()],
            "table_md": (out / "table.md").read_text(),
            "downloads": [{"name": name, "url": f"/files/{job.id}/out/{name}?download=true"}
                          for name in ("report.html", "table.md", "results.json", *STRESS_PLOTS[kind]) if (out / name).is_file()],
            "report": f"/files/{job.id}/out/report.html",
            "summary": "".join(job.stdout).strip(),
        }

    return runner.submit("stress", [command], finish, folder=folder, measure=measure, job_id=job_id,
                         partial_outputs=("out", "inputs"))


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


def _plot_cue_timeline(cues: dict, path: Path) -> None:
    """The cue detector's per-frame series that a viewer can read: the glitch score, the face
    detector's confidence and the landmark jumps, with the frames where no face was found."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    timeline = cues["timeline"]
    times = np.asarray(timeline["time"], dtype=float)

    def series(name: str) -> np.ndarray:
        return np.array([np.nan if value is None else value for value in timeline.get(name, [])], dtype=float)

    figure, axis = plt.subplots(figsize=(6, 2.4), dpi=100)
    axis.plot(times, series("glitch_score"), label="glitch score", linewidth=1.2)
    jumps = series("landmark_jump")
    if np.isfinite(jumps).any() and np.nanmax(jumps) > 0:
        axis.plot(times, jumps / np.nanmax(jumps), label="landmark jump (scaled)", linewidth=1, alpha=0.8)
    lost = [t for t, found in zip(times, timeline.get("face_found", [])) if not found]
    if lost:
        axis.plot(lost, [0.02] * len(lost), "rx", label="no face")
    axis.set_ylim(0, 1.05)
    axis.set_xlabel("seconds")
    axis.legend(fontsize=7, loc="upper right")
    axis.set_title(f"cue detector: P(fake) {cues['probability_fake']:.2f} ({cues['verdict']})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


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
