"""`fakelab stress detection|animation` end to end on very short clips: the metrics by hand
with a scorer whose behaviour is known, the outputs, resuming, a broken input skipped, and
one-line errors for bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import shared_path
from fakelab.cli import main
from fakelab.detection.checkpoint import save_detector
from fakelab.detection.efficientnet import efficientnet_lite0
from fakelab.stress.detection import run_detection_sweep, write_detection_report
from fakelab.video import VideoWriter, iter_frames

REPO = Path(__file__).resolve().parents[1]


def write_clip(path: Path, video: str, frames: int = 4, size: int = 160) -> Path:
    with VideoWriter(path, 25) as writer:
        for frame in islice(iter_frames(shared_path("media", video)), frames):
            writer.write(cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA))
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stress")
    (root / "real").mkdir()
    (root / "fake").mkdir()
    write_clip(root / "real" / "a.mp4", "d0.mp4")
    write_clip(root / "fake" / "b.mp4", "d12.mp4")
    (root / "fake" / "c_broken.mp4").write_bytes(shared_path("media", "d12.mp4").read_bytes()[:3000])
    torch.manual_seed(0)
    save_detector(efficientnet_lite0(), root / "lite0.pt")
    return {"root": root, "real": root / "real", "fake": root / "fake", "checkpoint": root / "lite0.pt"}


def brightness(clip, frames) -> float:
    """A 'detector' whose answer is known: the clip's mean pixel value on [0, 1]."""
    return float(np.mean([frame.mean() for frame in frames]) / 255.0)


def test_detection_sweep_metrics_by_hand(folders, tmp_path):
    real, fake = sorted(folders["real"].iterdir()), sorted(folders["fake"].iterdir())
    sweep = run_detection_sweep(brightness, real, fake, tmp_path / "out", ["contrast"], [5], max_frames=4)
    clips = {Path(r["file"]).name: r["score"] for r in sweep.clean()["results"]}
    assert set(clips) == {"a.mp4", "b.mp4"}  # the broken clip is skipped and reported
    assert [Path(f["file"]).name for f in sweep.failures] == ["c_broken.mp4"]
    contrast = {Path(r["file"]).name: r["score"] for r in sweep.cells[("contrast", 5)]["results"]}
    summary = sweep.summary("contrast", 5)
    # contrast 0.35 scales every pixel (then truncates): the 'score' falls to about 0.35 of itself
    assert contrast["b.mp4"] == pytest.approx(0.35 * clips["b.mp4"], abs=0.004)
    assert summary["shift_fake"] == pytest.approx(contrast["b.mp4"] - clips["b.mp4"])
    assert summary["shift_real"] == pytest.approx(contrast["a.mp4"] - clips["a.mp4"])
    expected_auc = 1.0 if clips["b.mp4"] > clips["a.mp4"] else 0.0
    assert summary["auc"] == sweep.summary("clean", 0)["auc"] == expected_auc
    paths = write_detection_report(sweep, tmp_path / "out")
    table = paths["table"].read_text()
    assert "| contrast | " in table and "c_broken.mp4" in table
    results = json.loads(paths["json"].read_text())
    assert {(r["perturbation"], r["level"]) for r in results["rows"]} == {("clean", 0), ("contrast", 5)}


class _Checker(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.images = [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images += dict(attrs)["src"].startswith("data:image/png;base64,")
        elif tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack.pop() == tag


def run_in_process(capsys, *argv) -> tuple[int, str]:
    """The CLI in this process (no interpreter start-up): exit code and stderr."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit:  # argparse's usage errors
        code = exit.code
    return code, capsys.readouterr().err


def run(*argv, env_extra=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "fakelab", *map(str, argv)], capture_output=True, text=True, env=env, timeout=600)


def test_stress_detection_command_writes_everything_and_resumes(folders, tmp_path):
    out = tmp_path / "sweep"
    argv = [
        "stress", "detection", "--real", folders["real"], "--fake", folders["fake"], "--checkpoint", folders["checkpoint"],
        "-o", out, "--perturbation", "blur", "--perturbation", "eyes-closed", "--levels", "5", "--frames", "2", "--max-frames", "4",
    ]
    first = run(*argv)
    assert first.returncode == 0, first.stderr
    assert "c_broken.mp4" in first.stderr and "Traceback" not in first.stderr
    for name in ("results.json", "table.md", "auc.png", "fake_score.png", "real_score.png", "report.html"):
        assert (out / name).stat().st_size > 0
    cells = sorted(p.name for p in (out / "cells").iterdir())
    assert cells == ["blur-5.json", "clean-0.json", "eyes-closed-5.json"]
    checker = _Checker()
    checker.feed((out / "report.html").read_text())
    assert checker.stack == [] and checker.images >= 4  # 3 plots + example frames
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    again = run(*argv)
    assert again.returncode == 0 and "3 cells (3 already done)" in again.stderr
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    other = run(*[a if a != "5" else "4" for a in argv[:-2]], "--max-frames", "3")
    assert other.returncode == 1 and "other settings (max_frames)" in other.stderr


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, f: a[:a.index("--real") + 1] + [f["root"] / "nowhere"] + a[a.index("--real") + 2 :], "is not a folder"),
        (lambda a, f: a + ["--method", "cues"], "not allowed with argument --checkpoint"),
        (lambda a, f: a + ["--levels", "0"], "levels run from 1"),
        (lambda a, f: a + ["--frames", "0"], "at least 1"),
        (lambda a, f: a + ["--threshold", "2"], "between 0 and 1"),
        (lambda a, f: a + ["--seed", "-1"], "--seed: must be between 0"),
        (lambda a, f: a + ["--perturbation", "fog"], "invalid choice: 'fog'"),
        (lambda a, f: [x if x != f["checkpoint"] else f["real"] / "a.mp4" for x in a], "a.mp4"),
    ],
)
def test_stress_detection_bad_inputs_are_one_line(capsys, folders, tmp_path, change, message):
    out = tmp_path / "never"
    argv = ["stress", "detection", "--real", folders["real"], "--fake", folders["fake"], "--checkpoint", folders["checkpoint"], "-o", out]
    before = sorted(p.name for p in folders["root"].rglob("*"))
    code, err = run_in_process(capsys, *change(argv, folders))
    assert code != 0
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 or err.strip().splitlines()[-1].startswith("fakelab")
    assert not out.exists()
    assert sorted(p.name for p in folders["root"].rglob("*")) == before


def test_output_that_is_a_file_is_refused(capsys, folders, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    code, err = run_in_process(capsys, "stress", "animation", "--driving", folders["real"] / "a.mp4", "-o", target)
    assert code == 1 and "is a file; the output must be a folder" in err
    assert target.read_text() == "keep me"
    code, err = run_in_process(capsys, "stress", "animation", "--driving", tmp_path / "none.mp4", "-o", tmp_path / "o")
    assert code == 1 and "none.mp4 does not exist" in err and not (tmp_path / "o").exists()
    code, err = run_in_process(
        capsys, "stress", "animation", "--driving", folders["real"] / "a.mp4", "-o", tmp_path / "o", "--checkpoint", target
    )
    assert code == 1 and "--checkpoint is for --model fomm" in err and not (tmp_path / "o").exists()


def test_stress_animation_command_end_to_end(folders, tmp_path):
    out = tmp_path / "anim"
    argv = [
        "stress", "animation", "--driving", folders["real"] / "a.mp4", "-o", out,
        "--perturbation", "bitrate", "--perturbation", "hand", "--levels", "5", "--max-frames", "4",
    ]
    result = run(*argv)
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "results.json").read_text())
    rows = {(r["perturbation"], r["level"]): r for r in data["rows"]}
    assert set(rows) == {("clean", 0), ("bitrate", 5), ("hand", 5)}
    clean = rows[("clean", 0)]
    assert clean["l1"] == 0.0 and clean["akd"] == 0.0  # the reference against itself
    assert clean["l1_truth"] > 0  # self-reenactment: against the real frames
    assert rows[("bitrate", 5)]["l1"] > 0 and rows[("hand", 5)]["l1"] > 0
    assert sum(b["frames"] for b in data["pose_curve"]) == 4
    for name in ("table.md", "quality.png", "pose.png", "report.html"):
        assert (out / name).stat().st_size > 0
    again = run(*argv)
    assert again.returncode == 0 and "3 cells (3 already done)" in again.stderr


def test_cue_scorer_scores_perturbed_frames(folders):
    """The cue scorer reads the perturbed frames themselves: a 45-degree turn looks like a
    pose inconsistency (the sweep measured reals going to 0.8-1.0), a lost face is an error
    the sweep counts as unscored."""
    from fakelab.errors import NoFaceError
    from fakelab.stress.detection import Clip, CueScorer, read_clip
    from fakelab.stress.perturbations import perturb

    path = folders["fake"] / "b.mp4"
    frames, fps = read_clip(path, 4)
    clip, scorer = Clip(path, 1, frames, fps, 0), CueScorer()
    clean, rotated = scorer(clip, frames), scorer(clip, perturb("rotation", frames, 5))
    assert rotated > clean + 0.3
    assert scorer(clip, perturb("rotation", frames, 5)) == rotated
    with pytest.raises(NoFaceError):
        scorer(clip, perturb("downscale", frames, 5))
