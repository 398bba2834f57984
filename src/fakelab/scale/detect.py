"""`fakelab detect DIR --ray`: a folder scan spread over a Ray cluster, resumable.

Each file's decoding and face following (the slow part) is a Ray task; the crops go to
detector actors, each of which loads the detector once; each result is appended to the
ledger the moment it arrives. Scores are the serial scan's: the same crops
(`fakelab.detection.pipeline.file_faces`) scored by the same `score_faces`.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from fakelab.detection.pipeline import (
    DEFAULT_FRAMES,
    DEFAULT_THRESHOLD,
    SCORING_RULE,
    FaceCrops,
    file_faces,
    ready_for_inference,
    score_faces,
)
from fakelab.errors import FakelabError
from fakelab.provenance.commands import provenance_fields, provenance_report
from fakelab.scale.cluster import LOCAL, cluster_cpus, ray_session
from fakelab.scale.ledger import Ledger

PathLike = str | os.PathLike


@dataclass
class RayScanResult:
    """Every file's ledger entry (this run's and earlier runs'), in the order of the paths."""

    ledger: Path
    entries: list[dict] = field(default_factory=list)
    resumed: int = 0  # files an earlier run had finished

    @property
    def results(self) -> list[dict]:
        return [entry for entry in self.entries if "error" not in entry]

    @property
    def failures(self) -> list[dict]:
        return [entry for entry in self.entries if "error" in entry]

    def to_json(self) -> dict:
        return {"scoring": SCORING_RULE, "ledger": str(self.ledger), "results": self.results, "failures": self.failures}


def extract_faces(
    path: str, size: int, frames: int, face_detector: str | None
) -> tuple[str | None, FaceCrops | None, dict]:
    """(error, crops, provenance) of one file; runs as a Ray task. A file that cannot be read
    or has no face is an error to record, as in the serial scan; so is any other failure of
    this file (a broken container can trip the decoder in unexpected ways). The provenance
    is what the serial scan adds to each entry: its report, and whether it marks the file
    as fakelab's."""
    provenance = file_provenance(path)
    try:
        return None, file_faces(path, size, frames, face_detector), provenance
    except FakelabError as error:
        return str(error), None, provenance
    except Exception as error:  # noqa: BLE001 - one broken file must not end a long scan
        return f"{path}: {type(error).__name__}: {error}", None, provenance


def file_provenance(path: PathLike) -> dict:
    """The ledger fields of a file's provenance, as `fakelab detect DIR --json` gives them."""
    try:
        report = provenance_report(path)
    except Exception:  # noqa: BLE001 - an unreadable file is recorded by the face step
        report = None
    return provenance_fields(report)


class DetectorActor:
    """Holds one detector, loaded once, and scores crops with it."""

    def __init__(self, checkpoint: str, arch: str | None, device: str, backend: str = "torch"):
        import torch

        from fakelab.detection.backends import with_backend
        from fakelab.detection.checkpoint import load_detector

        threads = max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
        torch.set_num_threads(threads)
        self.detector = with_backend(ready_for_inference(load_detector(checkpoint, arch), device), backend, threads)

    def score(self, faces: FaceCrops, threshold: float) -> dict:
        return score_faces(self.detector, faces, threshold).to_json()


def scan_header(checkpoint: PathLike, arch: str, frames: int, threshold: float, face_detector: str | None) -> dict:
    """What makes two scans the same job (a ledger resumes only its own job)."""
    checkpoint = Path(checkpoint).resolve()
    stat = checkpoint.stat()
    return {
        "command": "detect",
        "checkpoint": str(checkpoint),
        "checkpoint_bytes": stat.st_size,
        "checkpoint_mtime": int(stat.st_mtime),
        "arch": arch,
        "frames": frames,
        "threshold": threshold,
        "face_detector": face_detector,
    }


def ray_scan(
    checkpoint: PathLike,
    paths: Sequence[PathLike],
    ledger_path: PathLike,
    address: str | None = LOCAL,
    num_cpus: int | None = None,
    frames: int = DEFAULT_FRAMES,
    threshold: float = DEFAULT_THRESHOLD,
    face_detector: str | None = None,
    arch: str | None = None,
    device: str = "cpu",
    actors: int | None = None,
    backend: str = "torch",
    restart: bool = False,
    on_entry: Callable[[dict], None] | None = None,
) -> RayScanResult:
    """Score `paths` on Ray, appending each result to the ledger; files the ledger already
    holds (from an interrupted run of the same job) are not scored again."""
    from fakelab.detection.checkpoint import load_detector

    detector = load_detector(checkpoint, arch)  # fails here, in one line, on a bad checkpoint
    size, arch = detector.input_spec.size, detector.arch
    del detector
    ledger = Ledger(ledger_path, scan_header(checkpoint, arch, frames, threshold, face_detector))
    done = ledger.open(restart=restart)
    try:
        todo = [Path(p) for p in paths if str(p) not in done]
        if todo:
            with ray_session(address, num_cpus) as ray:
                _run(ray, ledger, todo, str(Path(checkpoint).resolve()), arch, device, size, frames, threshold,
                     face_detector, actors, backend, on_entry)
    finally:
        ledger.close()
    by_file = {entry["file"]: entry for entry in ledger.entries}
    entries = [by_file[str(p)] for p in paths if str(p) in by_file]
    return RayScanResult(Path(ledger_path), entries, resumed=len(done & {str(p) for p in paths}))


def _run(ray, ledger, todo, checkpoint, arch, device, size, frames, threshold, face_detector, actors, backend, on_entry) -> None:
    cpus = cluster_cpus(ray)
    extract = ray.remote(num_cpus=1, num_returns=3, max_retries=1)(extract_faces)
    # Scoring is a small share of the work: the actors take no CPU from the task slots.
    actor_class = ray.remote(num_cpus=0)(DetectorActor)
    pool = [actor_class.remote(checkpoint, arch, device, backend) for _ in range(actors or max(1, cpus // 4))]
    queue = deque(todo)
    pending: dict = {}  # ref -> (stage, path, crops ref, provenance ref)
    in_flight_limit = 2 * cpus
    turn = 0

    def submit() -> None:
        while queue and sum(stage == "faces" for stage, *_ in pending.values()) < in_flight_limit:
            path = queue.popleft()
            error_ref, crops_ref, provenance_ref = extract.remote(str(path), size, frames, face_detector)
            pending[error_ref] = ("faces", path, crops_ref, provenance_ref)

    def provenance(ref) -> dict:
        try:
            return ray.get(ref)
        except ray.exceptions.RayError:
            return provenance_fields(None)  # the worker died: not readable

    submit()
    while pending:
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        stage, path, crops_ref, provenance_ref = pending.pop(ref)
        try:
            value = ray.get(ref)
        except ray.exceptions.RayError as error:  # a worker died on this file
            value = f"{path}: the Ray worker failed ({type(error).__name__})" if stage == "faces" else None
            if stage == "score":
                value = {"file": str(path), "error": f"{path}: scoring failed ({type(error).__name__})"}
        if stage == "faces":
            if value is None:  # crops ready: to an actor, round robin
                actor = pool[turn % len(pool)]
                turn += 1
                pending[actor.score.remote(crops_ref, threshold)] = ("score", path, None, provenance_ref)
            else:
                _finish(ledger, {"file": str(path), "error": value, **provenance(provenance_ref)}, on_entry)
            submit()
        else:
            _finish(ledger, {**value, **provenance(provenance_ref)}, on_entry)


def _finish(ledger: Ledger, entry: dict, on_entry) -> None:
    ledger.record(entry)
    if on_entry:
        on_entry(entry)
