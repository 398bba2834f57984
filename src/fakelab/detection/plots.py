"""PNG figures of detection results: a video's score timeline and ROC curves.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, no display needed),
returned as PNG bytes so callers can write them or embed them in HTML.
"""

from __future__ import annotations

import io
from typing import Mapping

import numpy as np


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        from fakelab.errors import ConfigError

        raise ConfigError('plots need matplotlib: pip install "fakelab[detect]"') from None
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def timeline_png(times: np.ndarray, probabilities: np.ndarray, threshold: float, score: float, x_label: str) -> bytes:
    """Per-frame fake probability against time, with the threshold and the video score."""
    figure = _figure(8.0, 2.6)
    axes = figure.add_subplot()
    axes.plot(times, probabilities, marker="o", markersize=3, linewidth=1.2, color="#1f77b4", label="frame")
    axes.axhline(threshold, color="#d62728", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    axes.axhline(score, color="#2ca02c", linewidth=1.5, label=f"video score {score:.3f}")
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel(x_label)
    axes.set_ylabel("P(fake)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right", fontsize=8, framealpha=0.8)
    return _png(figure)


def roc_png(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], title: str = "ROC") -> bytes:
    """ROC curves, `name -> (false positive rates, true positive rates, AUC)`."""
    figure = _figure(4.8, 4.4)
    axes = figure.add_subplot()
    for name, (fpr, tpr, auc) in curves.items():
        axes.plot(fpr, tpr, linewidth=1.8, label=f"{name} (AUC {auc:.3f})")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_xlabel("false positive rate (real called fake)")
    axes.set_ylabel("true positive rate (fake caught)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    return _png(figure)


def cue_timelines_png(times: np.ndarray, series: Mapping[str, np.ndarray], flagged: np.ndarray | None = None) -> bytes:
    """One small panel per cue series against time (NaN: not measured), frames the glitch
    detector flagged shaded in red."""
    names = list(series)
    figure = _figure(8.0, 0.95 * len(names) + 0.6)
    axes_list = figure.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for axes, name in zip(axes_list, names):
        values = np.asarray(series[name], dtype=np.float64)
        axes.plot(times, values, linewidth=1.0, marker=".", markersize=2, color="#1f77b4")
        if flagged is not None and np.any(flagged):
            for time in np.asarray(times)[np.asarray(flagged, dtype=bool)]:
                axes.axvspan(time - 0.02, time + 0.02, color="#d62728", alpha=0.25, linewidth=0)
        axes.set_ylabel(name.replace("_", "\n"), fontsize=7, rotation=0, ha="right", va="center")
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
    axes_list[-1].set_xlabel("seconds")
    return _png(figure)
