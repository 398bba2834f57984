"""Stress a deepfake detector: every perturbation at every level over real and fake clips.

Each clip is read once (its first `max_frames` frames), perturbed in memory and scored
the way `fakelab detect` scores a video: the face followed through `frames` frames
sampled evenly, the FaceForensics++ crop, the sigmoid of the mean frame logit (or, with
`method="cues"`, the cue scorer's probability). Per (perturbation, level) cell: video-level
AUC, accuracy at the threshold, the mean fake and real scores, and their mean shift from
the unperturbed clips. A clip whose perturbed frames show no face the detector can find is
left out of that cell and counted as unscored. Cells are stored as they finish
(`store.CellStore`), so a sweep resumes where it stopped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from fakelab.errors import FakelabError, InputError
from fakelab.stress.perturbations import DEEPERFORENSICS, PERTURBATIONS, clip_landmarks, get_perturbation, perturb
from fakelab.stress.store import CellStore

PathLike = str | os.PathLike
DEFAULT_MAX_FRAMES = 48
DEFAULT_SCORED_FRAMES = 8
CLEAN = ("clean", 0)


@dataclass
class Clip:
    path: Path
    label: int  # 1 fake, 0 real
    frames: list[np.ndarray]
    fps: float
    seed: int
    _landmarks: list | None = None

    @property
    def name(self) -> str:
        return self.path.name

    def landmarks(self) -> list:
        if self._landmarks is None:
            self._landmarks = clip_landmarks(self.frames)
        return self._landmarks


def read_clip(path: PathLike, max_frames: int) -> tuple[list[np.ndarray], float]:
    from fakelab.detection.pipeline import is_image
    from fakelab.video import iter_frames, load_image, probe_video

    if is_image(path):
        return [load_image(path)], 25.0
    info = probe_video(path)
    return list(islice(iter_frames(path), max_frames)), info.fps


class CheckpointScorer:
    """P(fake) of a clip by a CNN detector, as `fakelab detect` computes it."""

    def __init__(self, detector, frames: int = DEFAULT_SCORED_FRAMES, face_detector: str | None = None):
        self.detector = detector
        self.frames = frames
        self.face_detector = face_detector
        self.name = f"checkpoint ({detector.arch})"

    def __call__(self, clip: Clip, frames: Sequence[np.ndarray]) -> float:
        from fakelab.detection.pipeline import follow_face, sample_indices, score_faces

        indices = sample_indices(len(frames), self.frames)
        faces = follow_face(
            ((int(i), frames[i]) for i in indices),
            self.detector.input_spec.size,
            clip.path,
            clip.fps,
            len(frames),
            self.face_detector,
        )
        return score_faces(self.detector, faces).score


class CueScorer:
    """P(fake) of a clip by the no-checkpoint cue scorer (`fakelab.detection.cues`)."""

    name = "cues"

    def __init__(self):
        try:
            from fakelab.detection.cues import score_video_cues
        except ImportError:
            raise InputError("--method cues needs fakelab.detection.cues, which this build does not have") from None
        self._score = score_video_cues

    def __call__(self, clip: Clip, frames: Sequence[np.ndarray]) -> float:
        return float(self._score(list(frames), fps=clip.fps).probability_fake)


@dataclass
class DetectionSweep:
    scorer_name: str
    threshold: float
    cells: dict[tuple[str, int], dict] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)  # inputs that could not be used at all

    def clean(self) -> dict:
        return self.cells[CLEAN]

    def summary(self, name: str, level: int) -> dict:
        return summarise_cell(self.cells[(name, level)], self.clean(), self.threshold)

    def rows(self) -> list[dict]:
        rows = []
        for (name, level) in self.cells:
            row = {"perturbation": name, "level": level, **self.summary(name, level)}
            row["parameter"] = "none" if name == "clean" else get_perturbation(name).label(level)
            rows.append(row)
        return rows

    def to_json(self) -> dict:
        return {
            "scorer": self.scorer_name,
            "threshold": self.threshold,
            "metric_definitions": {
                "auc": "video-level ROC AUC, fake = positive, over the clips scored in this cell",
                "accuracy": "video-level accuracy at the threshold",
                "mean_fake / mean_real": "mean P(fake) of the fake / real clips",
                "shift_fake / shift_real": "mean change of P(fake) from the same clip unperturbed",
                "unscored": "clips whose perturbed frames gave no face to score",
            },
            "rows": self.rows(),
            "failures": self.failures,
            "cells": [
                {"perturbation": name, "level": level, **cell} for (name, level), cell in self.cells.items()
            ],
        }


def summarise_cell(cell: dict, clean: dict, threshold: float) -> dict:
    from fakelab.detection.metrics import accuracy, roc_auc

    scores = {r["file"]: r for r in cell["results"]}
    clean_scores = {r["file"]: r["score"] for r in clean["results"] if r["score"] is not None}
    scored = [r for r in scores.values() if r["score"] is not None]
    labels = np.array([r["label"] for r in scored])
    values = np.array([r["score"] for r in scored])
    both = len(set(labels.tolist())) == 2
    summary = {
        "auc": roc_auc(labels, values) if both else None,
        "accuracy": accuracy(labels, values, threshold) if both else None,
        "unscored": sum(r["score"] is None for r in scores.values()),
    }
    for label, kind in ((1, "fake"), (0, "real")):
        chosen = [r for r in scored if r["label"] == label]
        summary[f"mean_{kind}"] = float(np.mean([r["score"] for r in chosen])) if chosen else None
        shifts = [r["score"] - clean_scores[r["file"]] for r in chosen if r["file"] in clean_scores]
        summary[f"shift_{kind}"] = float(np.mean(shifts)) if shifts else None
    return summary


def sweep_cells(
    names: Sequence[str], levels: Sequence[int] | None, cells: Sequence[tuple[str, int]] | None = None
) -> list[tuple[str, int]]:
    """The clean cell, then each perturbation at each of its levels (or those asked for);
    or the clean cell and `cells` when given."""
    if cells is not None:
        return list(dict.fromkeys([CLEAN, *cells]))
    cells = [CLEAN]
    for name in names:
        perturbation = get_perturbation(name)
        chosen = perturbation.levels if levels is None else [lv for lv in levels if lv in perturbation.levels]
        cells += [(name, level) for level in chosen]
    return cells


def load_clips(
    real: Sequence[PathLike], fake: Sequence[PathLike], max_frames: int, seed: int
) -> tuple[list[Clip], list[dict]]:
    """Every readable clip; the others as failures (file, error)."""
    clips, failures = [], []
    for label, paths in ((0, real), (1, fake)):
        for path in paths:
            try:
                frames, fps = read_clip(path, max_frames)
                if not frames:
                    raise InputError(f"{path} has no frames")
            except FakelabError as error:
                failures.append({"file": str(path), "error": str(error)})
                continue
            clips.append(Clip(Path(path), label, frames, fps, seed * 100_003 + len(clips)))
    return clips, failures


def run_detection_sweep(
    scorer: Callable[[Clip, Sequence[np.ndarray]], float],
    real: Sequence[PathLike],
    fake: Sequence[PathLike],
    output: PathLike,
    perturbations: Sequence[str] = tuple(PERTURBATIONS),
    levels: Sequence[int] | None = None,
    max_frames: int = DEFAULT_MAX_FRAMES,
    threshold: float = 0.5,
    seed: int = 0,
    settings: dict | None = None,
    restart: bool = False,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    log: Callable[[str], None] = lambda message: None,
    cells: Sequence[tuple[str, int]] | None = None,
    map_cells: Callable | None = None,
) -> DetectionSweep:
    """Run (or resume) the sweep into the folder `output`; returns every cell.

    `cells` ((perturbation, level) pairs; the unperturbed cell is always added) replaces
    `perturbations` x `levels` when given. `map_cells` computes the cells elsewhere
    (`fakelab.scale.cells.ray_cell_map`); the results are the same."""
    log(f"reading {len(real)} real and {len(fake)} fake clips")
    clips, failures = load_clips(real, fake, max_frames, seed)
    for failure in failures:
        log(f"skipped {failure['file']}: {failure['error']}")
    if {clip.label for clip in clips} != {0, 1}:
        raise InputError("the sweep needs at least one readable real clip and one readable fake clip")
    store = CellStore(
        output,
        {
            **(settings or {}),
            "real": sorted(str(p) for p in real),
            "fake": sorted(str(p) for p in fake),
            "max_frames": max_frames,
            "seed": seed,
        },
        restart,
    )
    sweep = DetectionSweep(getattr(scorer, "name", "scorer"), threshold, failures=failures)
    cells = sweep_cells(perturbations, levels, cells)
    log(f"{len(cells)} cells ({len(cells) - len(store.pending(cells))} already done), {len(clips)} clips")
    sweep.cells = store.fill(cells, clips, partial(_score_clip, scorer, store=store), progress, map_cells)
    unusable = [r["file"] for r in sweep.clean()["results"] if r["score"] is None]
    if unusable:
        # A clip the detector cannot score unperturbed says nothing about perturbations.
        sweep.failures += [
            {"file": r["file"], "error": r["error"]} for r in sweep.clean()["results"] if r["score"] is None
        ]
        for cell in sweep.cells.values():
            cell["results"] = [r for r in cell["results"] if r["file"] not in unusable]
    labels = {r["label"] for r in sweep.clean()["results"]}
    if labels != {0, 1}:
        raise InputError("the sweep needs at least one real and one fake clip that can be scored unperturbed")
    return sweep


def _score_clip(scorer, name: str, level: int, clip: Clip, store: CellStore) -> dict:
    record = {"file": str(clip.path), "label": clip.label, "score": None, "error": None}
    try:
        if name == "clean":
            frames = clip.frames
        else:
            needs = get_perturbation(name).needs_landmarks
            frames = perturb(name, clip.frames, level, clip.seed, clip.landmarks() if needs else None, clip.fps)
        record["score"] = float(scorer(clip, frames))
    except FakelabError as error:
        record["error"] = str(error)
        return record
    if clip.label == 1 and not store.example_path(name, level).exists():
        store.save_example(name, level, _thumbnail(frames[len(frames) // 2]))
    return record


def _thumbnail(frame: np.ndarray, side: int = 192) -> np.ndarray:
    import cv2

    height, width = frame.shape[:2]
    scale = side / max(height, width)
    return cv2.resize(frame, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)


__all__ = [
    "DEEPERFORENSICS",
    "CheckpointScorer",
    "CueScorer",
    "DetectionSweep",
    "run_detection_sweep",
]


def describe_cell(name: str, level: int) -> str:
    return "unperturbed" if name == "clean" else f"{name} {level}: {get_perturbation(name).label(level)}"


def _series(sweep: DetectionSweep, key: str) -> dict:
    from fakelab.stress.report import level_series

    return level_series(sweep.cells, lambda name, level: sweep.summary(name, level)[key])


def grid_rows(sweep: DetectionSweep, key: str, signed_values: bool = False) -> tuple[list[str], list[list[str]]]:
    """A perturbation x level grid of one summary value; level 0 is the clean clips."""
    from fakelab.stress.report import cell_text, signed

    series = _series(sweep, key)
    columns = sorted({level for levels, _ in series.values() for level in levels} - {0})
    headers = ["perturbation", "0 (clean)", *(str(level) for level in columns)]
    fmt = signed if signed_values else cell_text
    rows = []
    for name, (levels, values) in series.items():
        by_level = dict(zip(levels, values))
        rows.append([name, fmt(by_level[0]), *(fmt(by_level[c]) if c in by_level else "" for c in columns)])
    return headers, rows


def write_detection_report(sweep: DetectionSweep, folder: PathLike) -> dict[str, Path]:
    """results.json, table.md, auc.png, fake_score.png and report.html in `folder`."""
    from fakelab.stress import report

    folder = Path(folder)
    paths = {
        "json": report.write_json(folder / "results.json", sweep.to_json()),
    }
    long_headers = ["perturbation", "level", "parameter", "AUC", "ACC", "mean P(fake) fakes", "mean P(fake) reals", "shift fakes", "shift reals", "unscored"]
    long_rows = [
        [
            row["perturbation"], str(row["level"]), row["parameter"], report.cell_text(row["auc"]),
            report.cell_text(row["accuracy"]), report.cell_text(row["mean_fake"]), report.cell_text(row["mean_real"]),
            report.signed(row["shift_fake"]), report.signed(row["shift_real"]), str(row["unscored"]),
        ]
        for row in sweep.rows()
    ]
    auc_headers, auc_rows = grid_rows(sweep, "auc")
    shift_headers, shift_rows = grid_rows(sweep, "shift_fake", signed_values=True)
    real_headers, real_rows = grid_rows(sweep, "shift_real", signed_values=True)
    clips = len(sweep.clean()["results"])
    intro = (
        f"Scorer: {sweep.scorer_name}; {clips} clips; threshold {sweep.threshold:g}. "
        "Level 0 is the unperturbed clips; shifts are mean changes of P(fake) from them."
    )
    markdown = "\n\n".join(
        [
            f"# Detection stress sweep\n\n{intro}",
            "## AUC\n\n" + report.markdown_table(auc_headers, auc_rows),
            "## Mean shift of the fakes' P(fake)\n\n" + report.markdown_table(shift_headers, shift_rows),
            "## Mean shift of the reals' P(fake)\n\n" + report.markdown_table(real_headers, real_rows),
            "## Every cell\n\n" + report.markdown_table(long_headers, long_rows),
        ]
    ) + "\n"
    markdown += report.failures_markdown(sweep.failures)
    paths["table"] = report.write_text(folder / "table.md", markdown)
    auc_png = report.curves_png(_series(sweep, "auc"), "level (0 = unperturbed)", "video-level AUC", "AUC under each perturbation", (0.0, 1.02))
    fake_png = report.curves_png(_series(sweep, "mean_fake"), "level (0 = unperturbed)", "mean P(fake) of fake clips", "Fake clips' score under each perturbation")
    real_png = report.curves_png(_series(sweep, "mean_real"), "level (0 = unperturbed)", "mean P(fake) of real clips", "Real clips' score under each perturbation")
    paths["auc_png"] = report.write_bytes(folder / "auc.png", auc_png)
    paths["fake_png"] = report.write_bytes(folder / "fake_score.png", fake_png)
    paths["real_png"] = report.write_bytes(folder / "real_score.png", real_png)
    examples = report.example_images(folder, sweep.cells, describe_cell)
    sections = [
        ("Summary", f"<p>{intro}</p>"),
        ("AUC against level", report.figure_html(auc_png, "AUC curves")),
        ("AUC", report.html_table(auc_headers, auc_rows)),
        ("Fake clips' score", report.figure_html(fake_png, "fake score curves") + report.html_table(shift_headers, shift_rows)),
        ("Real clips' score", report.figure_html(real_png, "real score curves") + report.html_table(real_headers, real_rows)),
        ("Example frames (a fake clip's middle frame)", report.examples_html(examples)),
        ("Every cell", report.html_table(long_headers, long_rows)),
        *report.failures_section(sweep.failures),
    ]
    paths["html"] = report.write_text(folder / "report.html", report.html_page("Detection stress sweep", sections))
    return paths
