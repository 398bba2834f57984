"""The FOMM render's backends and calibration: whatever runs the per-frame graph (torch in
channels-last order, ONNX Runtime, OpenVINO, any batch size), the output stays within 1e-4 of
the torch modules; the calibration checks that for every plan it times, caches its choice and
honours overrides."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import shared_path
from fakelab.animation import calibrate
from fakelab.animation.checkpoint import load_networks
from fakelab.animation.config import load_config
from fakelab.animation.engine import FommAnimator, frames_to_tensor
from fakelab.animation.motion import MotionTransfer
from fakelab.cli import main
from fakelab.errors import FakelabError

TOLERANCE = 1e-4
MODES = {"relative": MotionTransfer(), "absolute": MotionTransfer(relative=False, adapt_scale=False)}


@pytest.fixture(scope="module")
def tiny():
    folder = shared_path("fixtures", "fomm")
    networks = load_networks(load_config(folder / "tiny-vox.yaml"), folder / "tiny-vox-cpk.pth.tar")
    reference = dict(np.load(folder / "tiny-vox-io.npz"))
    source = (reference["source"] * 255).round().astype(np.uint8)
    driving = (reference["driving"] * 255).round().astype(np.uint8)
    return networks, source, driving


def plain_predictions(networks, motion, source, driving) -> torch.Tensor:
    animator = FommAnimator(networks, motion, backend="torch", batch_size=1)
    outputs = animator.animate_tensors(frames_to_tensor([source], animator.device), frames_to_tensor(list(driving), animator.device).split(1))
    return torch.cat([out["prediction"] for out in outputs])


def rendered(animator, source, driving) -> torch.Tensor:
    batches = frames_to_tensor(list(driving), animator.device).split(animator.plan.batch_size)
    return torch.cat(list(animator.render_tensors(frames_to_tensor([source], animator.device), batches)))


@pytest.mark.parametrize("mode", list(MODES))
def test_every_backend_keeps_the_output(tiny, mode):
    networks, source, driving = tiny
    expected = plain_predictions(networks, MODES[mode], source, driving)
    plans = [("torch", True, 3), ("onnxruntime", False, 3), ("openvino", False, 1), ("openvino", False, 4)]
    installed = calibrate.available_backends(torch.device("cpu"))
    for backend, channels_last, batch in [plan for plan in plans if plan[0] in installed]:
        animator = FommAnimator(networks, MODES[mode], backend=backend, threads=1, batch_size=batch, channels_last=channels_last)
        difference = (rendered(animator, source, driving) - expected).abs().max().item()
        assert difference < TOLERANCE, (backend, batch, difference)


def test_the_calibrated_choice_keeps_the_output_and_is_cached(tiny, monkeypatch, tmp_path):
    networks, source, driving = tiny
    monkeypatch.delenv("FAKELAB_BACKEND", raising=False)
    monkeypatch.setenv("FAKELAB_CACHE", str(tmp_path))
    messages = []
    animator = FommAnimator(networks, MODES["relative"], log=messages.append)
    plan = animator.plan
    assert any(message.startswith("chose ") for message in messages)
    expected = plain_predictions(networks, MODES["relative"], source, driving)
    assert (rendered(animator, source, driving) - expected).abs().max().item() < TOLERANCE

    cached = json.loads((tmp_path / calibrate.CALIBRATION_FILE).read_text())
    [entry] = cached.values()
    assert calibrate.RenderPlan(**entry["plan"]) == plan
    timed_backends = {m["backend"] for m in entry["measurements"]}
    assert timed_backends == set(calibrate.available_backends(torch.device("cpu")))
    assert all(m["max_difference"] < TOLERANCE for m in entry["measurements"])  # every plan was checked

    again = []  # the second animator reads the cache: no measuring
    assert FommAnimator(networks, MODES["relative"], log=again.append).plan == plan and again == []
    overridden = FommAnimator(networks, MODES["relative"], threads=1, batch_size=2).plan
    assert (overridden.backend, overridden.threads, overridden.batch_size) == (plan.backend, 1, 2)


def test_uint8_frames_through_animate_match_the_plain_modules(tiny):
    networks, source, driving = tiny
    backend = calibrate.available_backends(torch.device("cpu"))[-1]  # an exported one when installed
    fast = FommAnimator(networks, MODES["relative"], backend=backend, threads=1, batch_size=2)
    plain = FommAnimator(networks, MODES["relative"], backend="torch", batch_size=1)
    ours, theirs = np.stack(list(fast.animate(source, driving))), np.stack(list(plain.animate(source, driving)))
    assert ours.shape == theirs.shape and np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def test_environment_and_bad_plans(tiny, monkeypatch):
    networks, _, _ = tiny
    monkeypatch.setenv("FAKELAB_BACKEND", "torch")
    monkeypatch.setenv("FAKELAB_THREADS", "1")
    monkeypatch.setenv("FAKELAB_BATCH_SIZE", "2")
    plan = FommAnimator(networks, MODES["relative"]).plan
    assert (plan.backend, plan.threads, plan.batch_size) == ("torch", 1, 2)
    monkeypatch.setenv("FAKELAB_THREADS", "two")
    with pytest.raises(FakelabError, match="whole numbers"):
        FommAnimator(networks, MODES["relative"]).plan
    monkeypatch.delenv("FAKELAB_THREADS")
    with pytest.raises(FakelabError, match="unknown render backend 'tensorrt'"):
        FommAnimator(networks, MODES["relative"], backend="tensorrt").plan
    with pytest.raises(FakelabError, match="fp16 runs on GPU only"):
        FommAnimator(networks, MODES["relative"], backend="torch", precision="fp16").plan


def test_animate_cli_refuses_bad_render_options(fomm_fixtures, media, tmp_path, capsys):
    base = ["animate", str(media / "s7.jpg"), str(media / "d0.mp4"), "-o", str(tmp_path / "out.mp4"),
            "--checkpoint", str(fomm_fixtures / "tiny-vox-cpk.pth.tar"), "--config", str(fomm_fixtures / "tiny-vox.yaml")]
    for extra, message in [(["--threads", "0"], "--threads: must be at least 1, got 0"),
                           (["--precision", "fp16"], "fp16 runs on GPU only")]:
        assert main(base + extra) != 0
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []
