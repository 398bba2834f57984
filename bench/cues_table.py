"""Table IV in kind: lip-sync vs forensic cues vs a CNN on real, motion-transfer and dubbed clips.

The clips come from bench/cue_clips.py (real segments of ../shared/media; landmark-warp
motion-transfer fakes keeping the driving audio; the same kind of fakes dubbed with
another speaker's audio). Each clip is scored three ways:

- lip-sync: minus the SyncNet-like confidence near zero offset (out of sync = fake); clips
  without usable audio are left out of this column;
- cues: the logistic cue model, cross-validated by driving video (the model that scores a
  clip was fitted, with bench/fit_cues_model.py's recipe, on clips of the other videos);
- cnn: an EfficientNet-Lite0 trained here in a few minutes on real clips of d0, d13 and d18
  with self-blended pseudo-fakes (`train_detector`), unless --checkpoint gives one.

Prints AUC per (set pair, method) and writes cues_table.json (scores per clip) and the
features that bench/fit_cues_model.py fits the shipped model on.

    nice -n 10 .venv/bin/python bench/cues_table.py [--out /tmp/fakelab-cue-clips] [--checkpoint C]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from cue_clips import DEFAULT_OUT, make_clips  # noqa: E402
from fit_cues_model import fit_logistic  # noqa: E402

from fakelab.detection.checkpoint import load_detector  # noqa: E402
from fakelab.detection.cues import CUE_NAMES, score_video_cues  # noqa: E402
from fakelab.detection.metrics import roc_auc  # noqa: E402
from fakelab.detection.pipeline import ready_for_inference, score_file  # noqa: E402
from fakelab.detection.train import TrainingConfig, train_detector  # noqa: E402

CNN_TRAINING_VIDEOS = ("d0", "d13", "d18")
PAIRS = (("real", "motion"), ("real", "dubbed"), ("motion", "dubbed"))
METHODS = ("lip-sync", "cues", "cnn")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def train_cnn(clips: list[dict], out: Path) -> Path:
    """A quick Lite0 self-blend detector on the real clips of CNN_TRAINING_VIDEOS."""
    checkpoint = out / "lite0-sbi-cues.safetensors"
    if checkpoint.exists():
        return checkpoint
    folder = out / "cnn_real"
    folder.mkdir(exist_ok=True)
    for clip in clips:
        if clip["set"] == "real" and clip["video"] in CNN_TRAINING_VIDEOS:
            link = folder / Path(clip["path"]).name
            if not link.exists():
                link.symlink_to(clip["path"])
    config = TrainingConfig(epochs=3, frames_per_video=16, pseudo_fakes="self-blend", val_fraction=0.34, patience=3)
    train_detector(folder, None, checkpoint, config, log=log)
    return checkpoint


def features(clips: list[dict], out: Path, checkpoint: Path | None) -> list[dict]:
    """Cue features, lip-sync and (with a checkpoint) the CNN's video logit per clip, cached
    in features.json."""
    cache_path = out / "features.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    detector = None
    for clip in clips:
        key = clip["path"]
        row = cache.setdefault(key, dict(clip))
        started = time.perf_counter()
        if "cues" not in row:
            verdict = score_video_cues(key)
            row["cues"] = verdict.cues
            row["lip_sync"] = verdict.lip_sync.to_json()
            row["glitch_flagged"] = float(np.mean([g.flagged for g in verdict.faces.glitches]))
        if checkpoint is not None and "cnn" not in row:
            detector = detector or ready_for_inference(load_detector(checkpoint))
            row["cnn"] = score_file(detector, key, frames=16).mean_logit
        cache_path.write_text(json.dumps(cache, indent=1, default=lambda v: None))
        log(f"{clip['set']:>6} {Path(key).name}: {time.perf_counter() - started:.1f} s")
    return [cache[clip["path"]] for clip in clips]


def cross_validated_cue_scores(rows: list[dict]) -> list[float]:
    """Each clip's cue logit from a model fitted on the clips of the other driving videos."""
    scores = []
    for row in rows:
        train = [r for r in rows if r["video"] != row["video"]]
        model = fit_logistic(train)
        scores.append(model.logit(row["cues"]))
    return scores


def lip_sync_score(row: dict) -> float:
    confidence = row["cues"].get("lip_sync_confidence")
    return math.nan if confidence is None or (isinstance(confidence, float) and math.isnan(confidence)) else -confidence


def table(rows: list[dict]) -> dict:
    cue_scores = cross_validated_cue_scores(rows)
    scores = {
        "lip-sync": [lip_sync_score(r) for r in rows],
        "cues": cue_scores,
        "cnn": [r.get("cnn", math.nan) for r in rows],
    }
    results = {}
    for negative, positive in PAIRS:
        for method in METHODS:
            pairs = [(s, r["set"] == positive) for s, r in zip(scores[method], rows) if r["set"] in (negative, positive)]
            pairs = [(s, label) for s, label in pairs if s is not None and not math.isnan(s)]
            labels = np.array([label for _, label in pairs], dtype=bool)
            if labels.all() or not labels.any():
                results[f"{negative} vs {positive}/{method}"] = {"auc": None, "n": [int((~labels).sum()), int(labels.sum())]}
                continue
            auc = roc_auc(labels.astype(int), np.array([s for s, _ in pairs]))
            results[f"{negative} vs {positive}/{method}"] = {"auc": float(auc), "n": [int((~labels).sum()), int(labels.sum())]}
    return {"results": results, "scores": {m: [None if s is None or math.isnan(s) else s for s in v] for m, v in scores.items()}}


def print_table(results: dict) -> None:
    print("\n| set pair (negative vs positive) | lip-sync AUC | cues AUC | CNN AUC | clips |")
    print("|---|---|---|---|---|")
    for negative, positive in PAIRS:
        cells = []
        for method in METHODS:
            entry = results[f"{negative} vs {positive}/{method}"]
            cells.append("n/a" if entry["auc"] is None else f"{entry['auc']:.3f}")
        counts = {m: results[f"{negative} vs {positive}/{m}"]["n"] for m in METHODS}
        print(f"| {negative} vs {positive} | {' | '.join(cells)} | {counts['cues'][0]} / {counts['cues'][1]} (lip-sync {counts['lip-sync'][0]} / {counts['lip-sync'][1]}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--checkpoint", type=Path, help="a detector checkpoint (default: train a quick Lite0)")
    parser.add_argument("--no-cnn", action="store_true", help="leave the CNN column out (no training)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    clips = make_clips(args.out)
    log(f"{len(clips)} clips ready")
    checkpoint = None if args.no_cnn else args.checkpoint or train_cnn(clips, args.out)
    log(f"CNN: {checkpoint}")
    rows = features(clips, args.out, checkpoint)
    outcome = table(rows)
    outcome["clips"] = [{k: r[k] for k in ("path", "set", "video", "source", "audio")} for r in rows]
    outcome["cue_names"] = list(CUE_NAMES)
    (args.out / "cues_table.json").write_text(json.dumps(outcome, indent=1))
    print_table(outcome["results"])
    log(f"done in {time.perf_counter() - started:.0f} s; scores in {args.out / 'cues_table.json'}")


if __name__ == "__main__":
    main()
