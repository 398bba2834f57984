"""Stress an animation model: perturb the driving video and measure what the animation loses.

For each (source, driving) pair (without sources: self-reenactment, the source being the
driving clip's first frame) the driving clip (its first `max_frames` frames, cut to the
followed face and resized to the model's size, as `fakelab animate --crop auto` does) is
animated once unperturbed: the reference. Then, per (perturbation, level) cell, the
perturbed driving clip is animated and compared with the reference:

- L1, AKD, AED of the animation against the reference (the FOMM paper's scores, from
  `fakelab.metrics`: landmarks and embeddings by dlib at 256x256); for self-reenactment also
  against the real driving frames ("truth");
- tracking failures: the fraction of perturbed driving frames where the face tracker does
  not find the face;
- glitch flag rate: the fraction of animated frames that the glitch detector
  (`fakelab.detection.glitch`: face lost or weakly found, landmark jumps) flags.

The unperturbed cell also records, per frame, the yaw/pitch gap between the source and the
driving frame (head pose from landmarks, `fakelab.stress.pose`), the AKD against the
landmarks the animation should have (the source's moved as the driving face moves, or the
truth for self-reenactment) and the glitch flag: the pose-mismatch curve.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from fakelab.errors import FakelabError, InputError
from fakelab.stress.detection import CLEAN, describe_cell, sweep_cells
from fakelab.stress.perturbations import PERTURBATIONS, clip_landmarks, get_perturbation, perturb
from fakelab.stress.store import CellStore

SWEEP_SIZE = (256, 256)

PathLike = str | os.PathLike
DEFAULT_MAX_FRAMES = 24
POSE_BINS = (0.0, 5.0, 10.0, 15.0, 20.0, 30.0, math.inf)
GLITCH_DETECTOR = "fakelab.detection.glitch at its default threshold"
SCORES = ("l1", "akd", "aed", "missing", "l1_truth", "akd_truth", "aed_truth", "tracking_failures", "glitch_rate")


@dataclass
class Pair:
    name: str
    source: np.ndarray
    driving: list[np.ndarray]
    fps: float
    seed: int
    self_reenactment: bool
    reference: list[np.ndarray] = field(default_factory=list)
    reference_faces: list = field(default_factory=list)
    truth_faces: list = field(default_factory=list)
    _landmarks: list | None = None

    def landmarks(self) -> list:
        if self._landmarks is None:
            self._landmarks = clip_landmarks(self.driving)
        return self._landmarks


def _driving_clip(path: PathLike, size: tuple[int, int], max_frames: int) -> tuple[list[np.ndarray], float]:
    from fakelab.animation.api import DrivingVideo
    from fakelab.video import iter_frames, probe_video

    info = probe_video(path)
    frames = list(islice(iter_frames(path), max_frames))
    if not frames:
        raise InputError(f"{path} has no frames")
    return list(DrivingVideo(frames, size, info.fps, crop=True).frames()), info.fps


def _source_image(path: PathLike, size: tuple[int, int]) -> np.ndarray:
    from fakelab.animation.api import resize_frame
    from fakelab.faces.crop import crop_image
    from fakelab.video import load_image

    return resize_frame(crop_image(load_image(path), size=max(size), where=str(path)).image, size)


def load_pairs(
    sources: Sequence[PathLike], driving: Sequence[PathLike], size: tuple[int, int], max_frames: int, seed: int
) -> tuple[list[Pair], list[dict]]:
    """Every (source, driving) pair whose inputs can be read; the others as failures."""
    failures, clips, images = [], {}, {}
    for path in driving:
        try:
            clips[str(path)] = _driving_clip(path, size, max_frames)
        except FakelabError as error:
            failures.append({"file": str(path), "error": str(error)})
    for path in sources:
        try:
            images[str(path)] = _source_image(path, size)
        except FakelabError as error:
            failures.append({"file": str(path), "error": str(error)})
    pairs = []
    for drive, (frames, fps) in clips.items():
        if sources:
            for source, image in images.items():
                name = f"{Path(source).stem} <- {Path(drive).stem}"
                pairs.append(Pair(name, image, frames, fps, seed * 100_003 + len(pairs), False))
        else:
            name = f"{Path(drive).stem} (self)"
            pairs.append(Pair(name, frames[0], frames, fps, seed * 100_003 + len(pairs), True))
    return pairs, failures


@dataclass
class AnimationSweep:
    model: str
    glitch_detector: str
    cells: dict[tuple[str, int], dict] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)

    def summary(self, name: str, level: int) -> dict:
        return summarise_cell(self.cells[(name, level)])

    def rows(self) -> list[dict]:
        rows = []
        for name, level in self.cells:
            parameter = "none" if name == "clean" else get_perturbation(name).label(level)
            rows.append({"perturbation": name, "level": level, "parameter": parameter, **self.summary(name, level)})
        return rows

    def pose_curve(self) -> list[dict]:
        """Per pose-gap bin: frames, mean AKD against the expected landmarks, glitch rate."""
        frames = [f for r in self.cells[CLEAN]["results"] for f in r.get("frames", [])]
        bins = []
        for low, high in zip(POSE_BINS[:-1], POSE_BINS[1:]):
            chosen = [f for f in frames if f["gap"] is not None and low <= f["gap"] < high]
            akds = [f["akd"] for f in chosen if f["akd"] is not None]
            bins.append(
                {
                    "gap_from": low,
                    "gap_to": None if math.isinf(high) else high,
                    "frames": len(chosen),
                    "akd": float(np.mean(akds)) if akds else None,
                    "glitch_rate": float(np.mean([f["glitch"] for f in chosen])) if chosen else None,
                }
            )
        return bins

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "glitch_detector": self.glitch_detector,
            "score_definitions": {
                "l1 / akd / aed": "against the animation of the unperturbed driving clip: mean |difference| in [0,1]; "
                "mean landmark distance in px at 256x256; mean L2 distance of dlib's 128-d embeddings",
                "l1_truth / akd_truth / aed_truth": "self-reenactment only: against the real (unperturbed) driving frames",
                "missing": "fraction of frames with a face in the reference where none is found in the animation",
                "tracking_failures": "fraction of perturbed driving frames where the face tracker does not find the face",
                "glitch_rate": "fraction of animated frames flagged by the glitch detector",
                "failed": "pairs the model could not animate at all (e.g. no face in the first driving frame)",
            },
            "rows": self.rows(),
            "pose_curve": self.pose_curve(),
            "failures": self.failures,
            "cells": [{"perturbation": name, "level": level, **cell} for (name, level), cell in self.cells.items()],
        }


def summarise_cell(cell: dict) -> dict:
    results = cell["results"]
    summary = {"pairs": len(results), "failed": sum(r.get("error") is not None for r in results)}
    for key in SCORES:
        values = [r[key] for r in results if r.get(key) is not None]
        summary[key] = float(np.mean(values)) if values else None
    return summary


def _frame_scores(generated, reference_faces, truth_faces, with_truth: bool) -> dict:
    from fakelab.metrics.faces import read_faces
    from fakelab.metrics.scores import embedding_distances, keypoint_distances, missing_flags

    faces = read_faces(generated)
    landmarks = [f.landmarks for f in faces]
    embeddings = [f.embedding for f in faces]

    def mean(values):
        return float(np.mean(values)) if len(values) else None

    scores = {
        "akd": mean(keypoint_distances([f.landmarks for f in reference_faces], landmarks)),
        "aed": mean(embedding_distances([f.embedding for f in reference_faces], embeddings)),
        "missing": mean([float(m) for m in missing_flags([f.landmarks for f in reference_faces], landmarks)]),
    }
    if with_truth:
        scores["akd_truth"] = mean(keypoint_distances([f.landmarks for f in truth_faces], landmarks))
        scores["aed_truth"] = mean(embedding_distances([f.embedding for f in truth_faces], embeddings))
    return scores, faces


def _tracking_failures(frames: Sequence[np.ndarray]) -> float:
    from fakelab.faces.tracking import track_faces

    tracking = track_faces(frames, detect_every=8, max_hold=0)
    if not tracking.tracks:
        return 1.0
    return 1.0 - float(tracking.tracks[0].detected.mean())


def _pose_frames(pair: Pair, generated_faces, glitches: Sequence[bool]) -> list[dict]:
    """Per frame of the unperturbed animation: pose gap, AKD against the expected landmarks, glitch."""
    from fakelab.metrics.evaluate import expected_landmarks
    from fakelab.metrics.faces import read_faces
    from fakelab.stress.pose import head_pose, pose_gap

    source_face = read_faces([pair.source])[0]
    driving_faces = pair.truth_faces or read_faces(pair.driving, with_embedding=False)
    expected = (
        [f.landmarks for f in driving_faces]
        if pair.self_reenactment
        else expected_landmarks(source_face, driving_faces)
    )
    size = SWEEP_SIZE  # read_faces' landmarks are at 256x256
    source_pose = head_pose(source_face.landmarks, size) if source_face.landmarks is not None else None
    frames = []
    for index, (face, want, marks, glitch) in enumerate(zip(generated_faces, expected, driving_faces, glitches)):
        gap = None
        if source_pose is not None and marks.landmarks is not None:
            gap = pose_gap(source_pose, head_pose(marks.landmarks, size))
        akd = None
        if want is not None and face.landmarks is not None:
            akd = float(np.linalg.norm(face.landmarks - want, axis=-1).mean())
        frames.append({"index": index, "gap": gap, "akd": akd, "glitch": bool(glitch)})
    return frames


def run_animation_sweep(
    animator,
    model_name: str,
    sources: Sequence[PathLike],
    driving: Sequence[PathLike],
    output: PathLike,
    perturbations: Sequence[str] = tuple(PERTURBATIONS),
    levels: Sequence[int] | None = None,
    max_frames: int = DEFAULT_MAX_FRAMES,
    seed: int = 0,
    settings: dict | None = None,
    restart: bool = False,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    log: Callable[[str], None] = lambda message: None,
    cells: Sequence[tuple[str, int]] | None = None,
    map_cells: Callable | None = None,
) -> AnimationSweep:
    """Run (or resume) the sweep into the folder `output`; returns every cell.

    `cells` ((perturbation, level) pairs; the unperturbed cell is always added) replaces
    `perturbations` x `levels` when given. `map_cells` computes the cells elsewhere
    (`fakelab.scale.cells.ray_cell_map`); the unperturbed animations are made here first."""
    from fakelab.metrics.faces import read_faces

    # A model that works at any size (the portrait model) gets the face crops at 256x256, the
    # size the metrics' landmarks are measured at, as the fixed-size models do.
    size = tuple(animator.size) if animator.size else SWEEP_SIZE
    log(f"reading {len(driving)} driving videos and {len(sources)} sources")
    pairs, failures = load_pairs(sources, driving, size, max_frames, seed)
    for failure in failures:
        log(f"skipped {failure['file']}: {failure['error']}")
    if not pairs:
        raise InputError("no (source, driving) pair could be read")
    store = CellStore(
        output,
        {
            **(settings or {}),
            "model": model_name,
            "sources": [str(p) for p in sources],
            "driving": [str(p) for p in driving],
            "max_frames": max_frames,
            "seed": seed,
        },
        restart,
    )
    sweep = AnimationSweep(model_name, GLITCH_DETECTOR, failures=failures)
    cells = sweep_cells(perturbations, levels, cells)
    pending = store.pending(cells)
    log(f"{len(cells)} cells ({len(cells) - len(pending)} already done), {len(pairs)} pairs, model {model_name}")
    usable = []
    for pair in pairs:
        try:
            pair.reference = list(animator.animate(pair.source, pair.driving))
        except FakelabError as error:
            sweep.failures.append({"file": pair.name, "error": f"cannot animate unperturbed: {error}"})
            continue
        if pending:
            pair.reference_faces = read_faces(pair.reference)
            pair.truth_faces = read_faces(pair.driving) if pair.self_reenactment else []
        usable.append(pair)
    if not usable:
        raise InputError("the model could not animate any pair unperturbed: " + "; ".join(f["error"] for f in sweep.failures))
    sweep.cells = store.fill(cells, usable, partial(_run_pair, animator, store=store), progress, map_cells)
    return sweep


def _run_pair(animator, name: str, level: int, pair: Pair, store: CellStore) -> dict:
    from fakelab.animation.api import resize_frame
    from fakelab.detection.glitch import find_glitches
    from fakelab.metrics.scores import l1_error

    record: dict = {"pair": pair.name, "error": None}
    if name == "clean":
        driving = pair.driving
    else:
        needs = get_perturbation(name).needs_landmarks
        driving = perturb(name, pair.driving, level, pair.seed, pair.landmarks() if needs else None, pair.fps)
        driving = [resize_frame(frame, animator.size or SWEEP_SIZE) for frame in driving]
    record["tracking_failures"] = _tracking_failures(driving)
    try:
        generated = pair.reference if name == "clean" else list(animator.animate(pair.source, driving))
    except FakelabError as error:
        record["error"] = str(error)
        return record
    record["l1"] = float(np.mean([l1_error(g, r) for g, r in zip(generated, pair.reference)]))
    scores, faces = _frame_scores(generated, pair.reference_faces, pair.truth_faces, pair.self_reenactment)
    record.update(scores)
    if pair.self_reenactment:
        record["l1_truth"] = float(np.mean([l1_error(g, t) for g, t in zip(generated, pair.driving)]))
    glitches = [glitch.flagged for glitch in find_glitches(generated)]
    record["glitch_rate"] = float(np.mean(glitches))
    if name == "clean":
        record["frames"] = _pose_frames(pair, faces, glitches)
    if not store.example_path(name, level).exists():
        middle = len(generated) // 2
        store.save_example(name, level, np.concatenate([driving[middle], generated[middle]], axis=1))
    return record


# ------------------------------------------------------------------------------- outputs

PLOTTED = (
    ("l1", "L1 vs unperturbed animation"),
    ("akd", "AKD (px @256) vs unperturbed animation"),
    ("tracking_failures", "tracking failures (fraction of frames)"),
    ("glitch_rate", "glitch flag rate (fraction of frames)"),
)


def _series(sweep: AnimationSweep, key: str) -> dict:
    from fakelab.stress.report import level_series

    return level_series(sweep.cells, lambda name, level: sweep.summary(name, level)[key])


def quality_png(sweep: AnimationSweep) -> bytes:
    from fakelab.detection.plots import _figure, _png

    figure = _figure(12.0, 8.0)
    grid = figure.subplots(2, 2)
    for axes, (key, title) in zip(grid.ravel(), PLOTTED):
        for name, (xs, ys) in _series(sweep, key).items():
            axes.plot(xs, [math.nan if y is None else y for y in ys], marker="o", markersize=3, linewidth=1.3, label=name)
        axes.set_title(title, fontsize=10)
        axes.set_xlabel("level (0 = unperturbed)")
        axes.grid(alpha=0.3)
    grid[0, 1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return _png(figure)


def pose_png(sweep: AnimationSweep) -> bytes:
    from fakelab.detection.plots import _figure, _png

    frames = [f for r in sweep.cells[CLEAN]["results"] for f in r.get("frames", []) if f["gap"] is not None]
    figure = _figure(8.0, 4.4)
    axes = figure.add_subplot()
    points = [(f["gap"], f["akd"]) for f in frames if f["akd"] is not None]
    if points:
        gaps, akds = zip(*points)
        axes.scatter(gaps, akds, s=6, alpha=0.35, color="#7f7f7f", label="frames")
    curve = [b for b in sweep.pose_curve() if b["akd"] is not None]
    if curve:
        centres = [(b["gap_from"] + (b["gap_to"] if b["gap_to"] is not None else b["gap_from"] + 10)) / 2 for b in curve]
        axes.plot(centres, [b["akd"] for b in curve], marker="o", color="#d62728", linewidth=2, label="mean per bin")
        twin = axes.twinx()
        twin.plot(centres, [b["glitch_rate"] for b in curve], marker="s", color="#1f77b4", linestyle="--", label="glitch rate")
        twin.set_ylabel("glitch flag rate", color="#1f77b4")
        twin.set_ylim(0, 1.02)
    axes.set_xlabel("yaw/pitch gap between source and driving frame (degrees)")
    axes.set_ylabel("AKD against the expected landmarks (px @256)")
    axes.set_title(f"Pose mismatch, {sweep.model}")
    axes.grid(alpha=0.3)
    if points or curve:
        axes.legend(loc="upper left", fontsize=8)
    else:
        axes.text(0.5, 0.5, "no frame with a face in both source and animation", ha="center", transform=axes.transAxes)
    return _png(figure)


def write_animation_report(sweep: AnimationSweep, folder: PathLike) -> dict[str, Path]:
    """results.json, table.md, quality.png, pose.png and report.html in `folder`."""
    from fakelab.stress import report

    folder = Path(folder)
    paths = {"json": report.write_json(folder / "results.json", sweep.to_json())}
    headers = ["perturbation", "level", "parameter", "L1", "AKD", "AED", "missing", "L1 truth", "AKD truth", "tracking failures", "glitch rate", "failed"]
    rows = [
        [
            row["perturbation"], str(row["level"]), row["parameter"], report.cell_text(row["l1"], 4),
            report.cell_text(row["akd"], 2), report.cell_text(row["aed"], 3), report.cell_text(row["missing"], 3),
            report.cell_text(row["l1_truth"], 4), report.cell_text(row["akd_truth"], 2),
            report.cell_text(row["tracking_failures"], 3), report.cell_text(row["glitch_rate"], 3),
            f"{row['failed']}/{row['pairs']}",
        ]
        for row in sweep.rows()
    ]
    pose_headers = ["gap (degrees)", "frames", "AKD (px @256)", "glitch rate"]
    pose_rows = [
        [
            f"{b['gap_from']:g}-{b['gap_to']:g}" if b["gap_to"] is not None else f"{b['gap_from']:g}+",
            str(b["frames"]), report.cell_text(b["akd"], 2), report.cell_text(b["glitch_rate"], 3),
        ]
        for b in sweep.pose_curve()
    ]
    intro = (
        f"Model: {sweep.model}. Glitch detector: {sweep.glitch_detector}. Scores compare each perturbed "
        "animation with the animation of the unperturbed driving clip; 'truth' columns (self-reenactment) "
        "compare with the real driving frames."
    )
    markdown = (
        f"# Animation stress sweep\n\n{intro}\n\n"
        + report.markdown_table(headers, rows)
        + "\n\n## Pose mismatch (unperturbed driving)\n\n"
        + report.markdown_table(pose_headers, pose_rows)
        + "\n"
    )
    markdown += report.failures_markdown(sweep.failures)
    paths["table"] = report.write_text(folder / "table.md", markdown)
    quality = quality_png(sweep)
    pose = pose_png(sweep)
    paths["quality_png"] = report.write_bytes(folder / "quality.png", quality)
    paths["pose_png"] = report.write_bytes(folder / "pose.png", pose)
    examples = report.example_images(folder, sweep.cells, lambda n, lv: describe_cell(n, lv) + " (driving | animation)")
    sections = [
        ("Summary", f"<p>{intro}</p>"),
        ("Quality against level", report.figure_html(quality, "quality curves")),
        ("Every cell", report.html_table(headers, rows)),
        ("Pose mismatch", report.figure_html(pose, "pose curve") + report.html_table(pose_headers, pose_rows)),
        ("Example frames (first pair, middle frame)", report.examples_html(examples)),
        *report.failures_section(sweep.failures),
    ]
    paths["html"] = report.write_text(folder / "report.html", report.html_page("Animation stress sweep", sections))
    return paths
