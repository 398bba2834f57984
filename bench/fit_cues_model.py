"""Fit the cue model shipped as src/fakelab/detection/cues_model.json.

Reads the per-clip cues that bench/cues_table.py wrote (features.json in its clip folder):
real clips are label 0, motion-transfer and dubbed fakes label 1. Each cue is standardised
by its mean and standard deviation over the clips (a missing cue, e.g. lip-sync without
audio, counts as the mean), and an L2-regularised logistic regression (penalty 1/2 |w|^2,
classes weighted to equal total weight) is fitted by L-BFGS. Prints the weights and the
in-sample AUC, and writes the model unless --dry-run.

    .venv/bin/python bench/fit_cues_model.py [--out /tmp/fakelab-cue-clips] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fakelab.detection.cues import CUE_NAMES, CueModel  # noqa: E402
from fakelab.detection.metrics import roc_auc  # noqa: E402

MODEL_PATH = ROOT / "src" / "fakelab" / "detection" / "cues_model.json"
L2 = 1.0


def _matrix(rows: list[dict]) -> np.ndarray:
    def value(row, name):
        v = row["cues"].get(name)
        return math.nan if v is None else float(v)

    return np.array([[value(row, name) for name in CUE_NAMES] for row in rows], dtype=np.float64)


def fit_logistic(rows: list[dict], l2: float = L2, description: str = "") -> CueModel:
    """The logistic cue model fitted on rows ({"set", "cues"}); see the module docstring."""
    x = _matrix(rows)
    y = np.array([0.0 if row["set"] == "real" else 1.0 for row in rows])
    mean = np.array([np.nanmean(column) if not np.isnan(column).all() else 0.0 for column in x.T])
    std = np.array([np.nanstd(column) if not np.isnan(column).all() else 1.0 for column in x.T])
    std = np.where(std > 1e-12, std, 1.0)
    z = np.nan_to_num((x - mean) / std, nan=0.0)
    weight = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1)) * len(y)

    def loss(params):
        w, b = params[:-1], params[-1]
        logits = z @ w + b
        nll = weight * (np.logaddexp(0, logits) - y * logits)
        probabilities = 1 / (1 + np.exp(-logits))
        grad_logits = weight * (probabilities - y)
        return nll.sum() + 0.5 * l2 * w @ w, np.append(z.T @ grad_logits + l2 * w, grad_logits.sum())

    solution = minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B")
    return CueModel(tuple(CUE_NAMES), mean, std, solution.x[:-1], float(solution.x[-1]), description)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/fakelab-cue-clips"))
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    rows = list(json.loads((args.out / "features.json").read_text()).values())
    counts = {kind: sum(r["set"] == kind for r in rows) for kind in ("real", "motion", "dubbed")}
    description = (
        f"bench/fit_cues_model.py on {len(rows)} clips of 3-3.6 s made by bench/cue_clips.py from ../shared/media: "
        f"{counts['real']} real segments of d0, d11, d12, d13, d18; {counts['motion']} landmark-warp motion-transfer "
        f"fakes (portraits s0, s3, s4, s7, s11 and frames of d0, d13, d18, crop + paste-back) keeping the driving audio; "
        f"{counts['dubbed']} such fakes dubbed with the other speaker's audio. L2 = {L2}, classes balanced."
    )
    model = fit_logistic(rows, description=description)
    labels = np.array([0 if r["set"] == "real" else 1 for r in rows])
    auc = roc_auc(labels, np.array([model.logit(r["cues"]) for r in rows]))
    for name, weight in sorted(zip(model.names, model.weights), key=lambda item: -abs(item[1])):
        print(f"{name:<20} {weight:+.3f}")
    print(f"bias {model.bias:+.3f}; in-sample AUC {auc:.3f} on {counts}")
    if not args.dry_run:
        MODEL_PATH.write_text(json.dumps(model.to_json(), indent=1) + "\n")
        print(f"wrote {MODEL_PATH}")


if __name__ == "__main__":
    main()
