"""Parity with the reference First Order Motion Model on the fixtures in ../shared/fixtures/fomm."""

import numpy as np
import pytest
import torch

from fakelab.animation.checkpoint import load_networks
from fakelab.animation.config import load_config
from fakelab.animation.engine import FommAnimator
from fakelab.animation.motion import MotionTransfer

MODES = {
    "relative_adapt": MotionTransfer(relative=True, adapt_scale=True),
    "relative": MotionTransfer(relative=True, adapt_scale=False),
    "absolute": MotionTransfer(relative=False, adapt_scale=False),
}
TOLERANCE = 1e-5
# The fixture README: `deformed` is a bilinear warp of a sharp image, where reordered float sums
# show most; the reference itself moves it by 2.4e-5 between batched and per-frame runs.
DEFORMED_TOLERANCE = 1e-4


def run_engine(fixtures, name, mode, batch_size=4):
    config = load_config(fixtures / f"{name}.yaml")
    networks = load_networks(config, fixtures / f"{name}-cpk.pth.tar")
    reference = dict(np.load(fixtures / f"{name}-io.npz"))
    source = torch.from_numpy(reference["source"]).permute(2, 0, 1)[None]
    driving = torch.from_numpy(reference["driving"]).permute(0, 3, 1, 2)
    batches = driving.split(batch_size)
    outputs = list(FommAnimator(networks, MODES[mode]).animate_tensors(source, batches, with_details=True))
    return outputs, reference


def gather(outputs, key):
    return torch.cat([out[key] for out in outputs]).numpy()


def max_error(ours, theirs):
    assert ours.shape == theirs.shape
    return float(np.abs(ours - theirs).max())


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", ["tiny-vox", "tiny-mgif", "tiny-zeroth"])
def test_outputs_match_reference(fomm_fixtures, name, mode):
    outputs, ref = run_engine(fomm_fixtures, name, mode)
    kp_source, kp_driving = outputs[0]["kp_source"], [out["kp_driving"] for out in outputs]

    assert max_error(kp_source.value.numpy(), ref["kp_source_value"]) < TOLERANCE
    assert max_error(torch.cat([kp.value for kp in kp_driving]).numpy(), ref["kp_driving_value"]) < TOLERANCE
    if "kp_source_jacobian" in ref:
        assert max_error(kp_source.jacobian.numpy(), ref["kp_source_jacobian"]) < TOLERANCE
        driving_jacobians = torch.cat([kp.jacobian for kp in kp_driving]).numpy()
        assert max_error(driving_jacobians, ref["kp_driving_jacobian"]) < TOLERANCE
    else:
        assert kp_source.jacobian is None

    to_hwc = (0, 2, 3, 1)
    assert max_error(gather(outputs, "prediction").transpose(to_hwc), ref[f"{mode}_prediction"]) < TOLERANCE
    assert max_error(gather(outputs, "deformed").transpose(to_hwc), ref[f"{mode}_deformed"]) < DEFORMED_TOLERANCE
    assert max_error(gather(outputs, "mask"), ref[f"{mode}_mask"]) < TOLERANCE
    if f"{mode}_occlusion_map" in ref:
        assert max_error(gather(outputs, "occlusion_map")[:, 0], ref[f"{mode}_occlusion_map"]) < TOLERANCE
    else:
        assert "occlusion_map" not in outputs[0]


def test_modes_differ(fomm_fixtures):
    """Guards the test above against fixtures that would not tell the modes apart."""
    _, ref = run_engine(fomm_fixtures, "tiny-vox", "relative")
    assert np.abs(ref["relative_prediction"] - ref["absolute_prediction"]).max() > 1e-3
    assert np.abs(ref["relative_prediction"] - ref["relative_adapt_prediction"]).max() > 1e-4


def test_batch_size_does_not_change_results(fomm_fixtures):
    per_frame, _ = run_engine(fomm_fixtures, "tiny-vox", "relative_adapt", batch_size=1)
    batched, _ = run_engine(fomm_fixtures, "tiny-vox", "relative_adapt", batch_size=6)
    assert max_error(gather(per_frame, "prediction"), gather(batched, "prediction")) < TOLERANCE


def test_plain_forward_matches_engine(fomm_fixtures):
    """The generator's one-call forward (used in training) equals the prepared-source path."""
    config = load_config(fomm_fixtures / "tiny-vox.yaml")
    networks = load_networks(config, fomm_fixtures / "tiny-vox-cpk.pth.tar")
    ref = np.load(fomm_fixtures / "tiny-vox-io.npz")
    source = torch.from_numpy(ref["source"]).permute(2, 0, 1)[None].expand(6, -1, -1, -1)
    driving = torch.from_numpy(ref["driving"]).permute(0, 3, 1, 2)
    with torch.no_grad():
        out = networks.generator(source, networks.kp_detector(driving), networks.kp_detector(source))
    absolute = ref["absolute_prediction"].transpose(0, 3, 1, 2)
    assert max_error(out["prediction"].numpy(), absolute) < TOLERANCE


def test_default_batch_is_one_frame_on_cpu_and_eight_on_gpu():
    from fakelab.animation.engine import default_batch_size

    # On CPU, batches only add memory traffic (bench/animate_speed.py); a GPU needs them.
    assert default_batch_size(torch.device("cpu")) == 1
    assert default_batch_size(torch.device("cuda")) == 8
