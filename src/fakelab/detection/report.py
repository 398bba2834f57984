"""A one-file HTML report of detection results, for an analyst to read or pass on.

For each scored file: the verdict and how it was reached, the per-frame score timeline,
and the most suspicious frames, each shown as the face crop the model saw and with the
model's heatmap laid over it. Every image is embedded as a base64 PNG, so the report is
a single self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
import os
from datetime import datetime, timezone
from typing import Sequence

import numpy as np
from PIL import Image

from fakelab.atomic import atomic_output
from fakelab.detection.gradcam import heatmap_kind, heatmaps, overlay
from fakelab.detection.pipeline import SCORING_RULE, ScanFailure, VideoScore
from fakelab.detection.plots import timeline_png
from fakelab.detection.spec import DeepfakeDetector

DEFAULT_TOP_FRAMES = 4

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; } td, th { padding: 0.2em 0.8em; text-align: left; border-bottom: 1px solid #eee; }
.fake { color: #b00020; font-weight: bold; } .real { color: #1b5e20; font-weight: bold; }
.frames { display: flex; flex-wrap: wrap; gap: 1em; } figure { margin: 0; }
figcaption { font-size: 0.85em; color: #555; } img { display: block; }
.note { color: #555; font-size: 0.9em; }
"""


def png_data_uri(image: np.ndarray | bytes) -> str:
    """A data: URI of an RGB uint8 array, or of PNG bytes as they are."""
    if isinstance(image, np.ndarray):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        image = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii")


def _img(image: np.ndarray | bytes, alt: str) -> str:
    return f'<img src="{png_data_uri(image)}" alt="{html.escape(alt)}">'


def most_suspicious(score: VideoScore, count: int) -> list[int]:
    """Positions (into the scored frames) of the `count` highest logits, highest first."""
    return list(np.argsort(-score.logits, kind="stable")[:count])


def _verdict(score: VideoScore) -> str:
    return f'<span class="{score.verdict}">{score.verdict.upper()}</span>'


def _file_section(detector: DeepfakeDetector, score: VideoScore, anchor: str, top: int) -> str:
    faces = score.faces
    name = html.escape(str(faces.source))
    rows = [
        ("verdict", _verdict(score)),
        ("score (P fake)", f"{score.score:.4f} (threshold {score.threshold:g})"),
    ]
    if faces.is_video:
        rows += [
            ("how", html.escape(f"{SCORING_RULE}, over {len(score.logits)} frames sampled evenly")),
            ("frames", f"{faces.frame_count} in the video, {faces.sampled} sampled, face found in {int(faces.detected.sum())}"),
            ("faces followed", f"{faces.faces_followed} (the one found most often is scored)"),
        ]
    table = "".join(f"<tr><th>{key}</th><td>{value}</td></tr>" for key, value in rows)
    parts = [f'<h2 id="{anchor}">{name}</h2>', f"<table>{table}</table>"]
    if faces.is_video:
        timeline = timeline_png(score.times, score.probabilities, score.threshold, score.score, "seconds")
        parts.append(f"<h3>Score per frame</h3>{_img(timeline, 'score timeline')}")
    chosen = most_suspicious(score, top)
    maps = heatmaps(detector, [faces.crops[i] for i in chosen])
    figures = []
    for position, heat in zip(chosen, maps):
        crop = faces.crops[position]
        when = f"frame {faces.frame_indices[position]}, {score.times[position]:.2f} s, " if faces.is_video else ""
        caption = f"{when}P(fake) {score.probabilities[position]:.3f}"
        figures.append(
            f"<figure>{_img(np.concatenate([crop, overlay(crop, heat)], axis=1), caption)}"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    heading = "Most suspicious frames" if faces.is_video else "The face"
    parts.append(
        f"<h3>{heading}</h3><p class='note'>Left: the face crop the model saw. Right: its "
        f"{heatmap_kind(detector)} (red: what pushed the score towards fake most).</p>"
        f"<div class='frames'>{''.join(figures)}</div>"
    )
    return "\n".join(parts)


def render_report(
    detector: DeepfakeDetector,
    scores: Sequence[VideoScore],
    failures: Sequence[ScanFailure] = (),
    checkpoint: str | os.PathLike | None = None,
    top: int = DEFAULT_TOP_FRAMES,
) -> str:
    """The report's HTML text."""
    summary_rows = "".join(
        f'<tr><td><a href="#file{index}">{html.escape(str(score.source))}</a></td>'
        f"<td>{_verdict(score)}</td><td>{score.score:.4f}</td><td>{len(score.logits)}</td></tr>"
        for index, score in enumerate(scores)
    )
    failure_rows = "".join(
        f"<tr><td>{html.escape(str(f.source))}</td><td>{html.escape(f.error)}</td></tr>" for f in failures
    )
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    source = f", checkpoint {html.escape(str(checkpoint))}" if checkpoint else ""
    body = [
        "<h1>fakelab detection report</h1>",
        f"<p class='note'>Made {made} with detector {html.escape(detector.arch)}{source}. "
        f"{html.escape(SCORING_RULE)}; the verdict is FAKE when it reaches the threshold.</p>",
        "<table><tr><th>file</th><th>verdict</th><th>score</th><th>frames scored</th></tr>"
        f"{summary_rows}</table>",
    ]
    if failures:
        body.append(f"<h2>Not scored</h2><table><tr><th>file</th><th>why</th></tr>{failure_rows}</table>")
    body += [_file_section(detector, score, f"file{index}", top) for index, score in enumerate(scores)]
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>fakelab detection report</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_report(
    path: str | os.PathLike,
    detector: DeepfakeDetector,
    scores: Sequence[VideoScore],
    failures: Sequence[ScanFailure] = (),
    checkpoint: str | os.PathLike | None = None,
    top: int = DEFAULT_TOP_FRAMES,
) -> None:
    """Write the HTML report atomically."""
    text = render_report(detector, scores, failures, checkpoint, top)
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _cue_section(verdict, anchor: str, combined=None) -> str:
    """One file of a cue report: verdict, each cue with its share of the logit, timelines."""
    import math

    from fakelab.detection.cues import CUE_MEANINGS, CUE_NAMES
    from fakelab.detection.plots import cue_timelines_png

    name = html.escape(verdict.source)
    drivers = ", ".join(f"{cue} ({share:+.2f})" for cue, share in verdict.drivers()) or "none"
    rows = [
        ("verdict", _verdict(verdict)),
        ("P(fake), cues", f"{verdict.probability_fake:.4f} (threshold {verdict.threshold:g})"),
        ("driven by", html.escape(drivers)),
        ("lip-sync", html.escape(verdict.lip_sync.summary())),
        ("frames", f"{verdict.frame_count} consecutive frames from the start, face found in "
                   f"{sum(g.face_found for g in verdict.faces.glitches)}, glitch flagged in "
                   f"{sum(g.flagged for g in verdict.faces.glitches)}"),
    ]
    if combined is not None:
        rows.insert(1, ("P(fake), all", f"{combined.probability_fake:.4f}: mean of the logits of "
                        + html.escape(", ".join(f"{m.name} ({m.probability:.3f})" for m in combined.members))))
    table = "".join(f"<tr><th>{key}</th><td>{value}</td></tr>" for key, value in rows)
    cue_rows = []
    for cue in CUE_NAMES:
        value = verdict.cues.get(cue, math.nan)
        shown = "not measured" if value is None or math.isnan(value) else f"{value:.4g}"
        share = verdict.contributions.get(cue, 0.0)
        colour = "fake" if share > 0.5 else "real" if share < -0.5 else ""
        cue_rows.append(
            f"<tr><td>{cue}</td><td>{shown}</td><td class='{colour}'>{share:+.2f}</td>"
            f"<td class='note'>{html.escape(CUE_MEANINGS[cue])}</td></tr>"
        )
    flagged = np.array([g.flagged for g in verdict.faces.glitches])
    timeline = cue_timelines_png(verdict.times, verdict.timeline, flagged)
    return "\n".join([
        f'<h2 id="{anchor}">{name}</h2>',
        f"<table>{table}</table>",
        "<h3>Cues</h3><p class='note'>Share: the cue's part of the model's log-odds (positive: towards fake).</p>",
        f"<table><tr><th>cue</th><th>value</th><th>share</th><th>meaning</th></tr>{''.join(cue_rows)}</table>",
        "<h3>Per frame</h3><p class='note'>Red: frames the glitch detector flagged.</p>",
        _img(timeline, "cue timelines"),
    ])


def render_cue_report(verdicts: Sequence, failures: Sequence[ScanFailure] = (), combined: Sequence | None = None) -> str:
    """The HTML text of a report on `CueVerdict`s (and, for `--method all`, their `CombinedVerdict`s)."""
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    combined = list(combined) if combined is not None else [None] * len(verdicts)
    summary_rows = "".join(
        f'<tr><td><a href="#file{index}">{html.escape(v.source)}</a></td>'
        f"<td>{_verdict(c or v)}</td><td>{(c or v).probability_fake:.4f}</td><td>{html.escape(', '.join(n for n, _ in v.drivers()))}</td></tr>"
        for index, (v, c) in enumerate(zip(verdicts, combined))
    )
    failure_rows = "".join(
        f"<tr><td>{html.escape(str(f.source))}</td><td>{html.escape(f.error)}</td></tr>" for f in failures
    )
    with_cnn = bool(combined) and combined[0] is not None
    method = "forensic cues and CNN, logits averaged" if with_cnn else "forensic cues (no trained CNN)"
    body = [
        "<h1>fakelab detection report</h1>",
        f"<p class='note'>Made {made}; method: {html.escape(method)}. The cue model is a logistic "
        "regression over the video-level cues; the verdict is FAKE when P(fake) reaches the threshold.</p>",
        "<table><tr><th>file</th><th>verdict</th><th>P(fake)</th><th>driven by</th></tr>" f"{summary_rows}</table>",
    ]
    if failures:
        body.append(f"<h2>Not scored</h2><table><tr><th>file</th><th>why</th></tr>{failure_rows}</table>")
    body += [_cue_section(v, f"file{index}", c) for index, (v, c) in enumerate(zip(verdicts, combined))]
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>fakelab detection report</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_cue_report(path: str | os.PathLike, verdicts: Sequence, failures: Sequence[ScanFailure] = (), combined: Sequence | None = None) -> None:
    """Write the cue report atomically."""
    text = render_cue_report(verdicts, failures, combined)
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
