"""Detector models and checkpoint loading: parity with the reference networks, the key
layouts of the released weights, and refusal of checkpoints that could run code."""

from __future__ import annotations

import pickle
import sys
import types
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from fakelab.detection.checkpoint import (
    load_detector,
    load_lite0_imagenet_classifier,
    load_state,
    pretrained_lite0_detector,
    read_checkpoint,
    read_module_pickle,
    save_detector,
)
from fakelab.detection.efficientnet import LITE0_INPUT, efficientnet_b4, efficientnet_b4_att, efficientnet_lite0
from fakelab.detection.registry import build_detector
from fakelab.detection.spec import InputSpec, fold_batch_norms
from fakelab.detection.xception import Block, SeparableConv2d, Xception, XceptionDetector
from fakelab.errors import CheckpointError, ConfigError, InputError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
# Made with EfficientNet-PyTorch 0.6 (the version of the Bonettini et al. release): their
# EfficientNetAutoAttB4 in eval mode, weights filled by `fill_by_rule`, input `b4_input()`.
B4_ATT_REFERENCE = Path(__file__).parent / "data" / "detection" / "efficientnet-b4-att-reference.npz"


@pytest.fixture(scope="module")
def ffpp_fixtures() -> Path:
    folder = SHARED / "fixtures" / "ffpp"
    if not (folder / "xception-io.npz").is_file():
        pytest.fail(f"FaceForensics++ fixtures missing: expected them in {folder}")
    return folder


def fill_by_rule(model: torch.nn.Module) -> torch.nn.Module:
    """Deterministic weights, key by key (the rule of shared/fixtures/README.md, ffpp section)."""
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
            if key.endswith("num_batches_tracked"):
                continue
            if key.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif key.endswith("running_mean"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            elif tensor.dim() >= 2:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * (1.2 / tensor[0].numel()) ** 0.5)
            else:
                offset = 1.0 if key.endswith("weight") else 0.0
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator) + offset)
    return model.eval()


@pytest.fixture(scope="module")
def xception() -> XceptionDetector:
    return fill_by_rule(XceptionDetector())


def key_listing(model: torch.nn.Module) -> list[str]:
    return [
        f"{key} {tuple(tensor.shape)} {str(tensor.dtype).removeprefix('torch.')}"
        for key, tensor in model.state_dict().items()
    ]


# --- Xception ---------------------------------------------------------------------------


def test_xception_state_dict_is_the_ffpp_one(ffpp_fixtures, xception):
    expected = (ffpp_fixtures / "xception.state_dict.txt").read_text().splitlines()
    assert key_listing(xception) == expected
    assert len(expected) == 276


def test_xception_reproduces_the_ffpp_logits(ffpp_fixtures, xception):
    reference = np.load(ffpp_fixtures / "xception-io.npz")
    images = torch.from_numpy(reference["input"])
    with torch.no_grad():
        logits = xception(images)
        fake_logit = xception.fake_logit(images)
    np.testing.assert_allclose(logits.numpy(), reference["logits"], atol=1e-4, rtol=0)
    # P(fake) from the two-way softmax equals sigmoid of the fake log-odds.
    np.testing.assert_allclose(
        torch.sigmoid(fake_logit).numpy(), logits.softmax(1)[:, 1].numpy(), atol=1e-6, rtol=0
    )
    assert xception.input_spec == InputSpec(299, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


# --- FaceForensics++ whole-module pickles ------------------------------------------------


def ffpp_release_module(detector: XceptionDetector) -> tuple[torch.nn.Module, dict[str, types.ModuleType]]:
    """A copy of `detector` whose classes live at the FaceForensics++ code paths
    (network.models.TransferModel, network.xception.*), as the released pickles record them."""
    package = types.ModuleType("network")
    xception_module = types.ModuleType("network.xception")
    models_module = types.ModuleType("network.models")
    release_classes = {}
    for module, ours, name in [
        (models_module, XceptionDetector, "TransferModel"),
        (xception_module, Xception, "Xception"),
        (xception_module, Block, "Block"),
        (xception_module, SeparableConv2d, "SeparableConv2d"),
    ]:
        release_class = type(name, (ours,), {"__module__": module.__name__})
        setattr(module, name, release_class)
        release_classes[ours] = release_class
    copy = XceptionDetector()
    copy.load_state_dict(detector.state_dict())
    for submodule in copy.modules():
        if type(submodule) in release_classes:
            submodule.__class__ = release_classes[type(submodule)]
    modules = {"network": package, "network.xception": xception_module, "network.models": models_module}
    return copy.eval(), modules


@pytest.mark.filterwarnings("ignore:Couldn't retrieve source code")
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_ffpp_whole_module_pickle_loads_without_its_code(tmp_path, xception, zip_format, monkeypatch):
    release_module, modules = ffpp_release_module(xception)
    path = tmp_path / "full_c23.p"
    with monkeypatch.context() as patch:
        for name, module in modules.items():
            patch.setitem(sys.modules, name, module)
        torch.save(release_module, path, _use_new_zipfile_serialization=zip_format)
    assert "network.xception" not in sys.modules

    detector = load_detector(path)

    assert isinstance(detector, XceptionDetector) and not detector.training
    images = torch.randn(2, 3, 299, 299, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(detector(images), release_module(images), rtol=0, atol=0)


class OldStyleParameter:
    """Pickles the way PyTorch 0.4.1 pickled an nn.Parameter."""

    def __init__(self, data: torch.Tensor):
        self.data = data

    def __reduce__(self):
        return torch.nn.Parameter, (self.data, True)


def test_parameters_pickled_by_pytorch_0_4_are_read_as_tensors(tmp_path):
    path = tmp_path / "old.p"
    torch.save({"weight": OldStyleParameter(torch.arange(3.0))}, path)
    loaded = read_module_pickle(path)["weight"]
    assert type(loaded) is torch.Tensor
    torch.testing.assert_close(loaded, torch.arange(3.0))


class RunsShellCommand:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return os.system, (self.command,)


def save_torch_zip(payload, path: Path) -> None:
    torch.save(payload, path)


def save_torch_legacy(payload, path: Path) -> None:
    torch.save(payload, path, _use_new_zipfile_serialization=False)


def save_plain_pickle(payload, path: Path) -> None:
    path.write_bytes(pickle.dumps(payload, protocol=2))


@pytest.mark.parametrize("save", [save_torch_zip, save_torch_legacy, save_plain_pickle])
def test_pickle_with_any_other_global_is_refused_and_runs_nothing(tmp_path, save):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "model.pth"
    # The payload comes first: a plain pickle of a tensor is refused too (its storage
    # unpickles through torch.load), which would hide what this test is about.
    save({"hook": RunsShellCommand(f"touch {marker}"), "conv.weight": torch.ones(2, 2)}, path)

    with pytest.raises(CheckpointError, match=r"refused: this file would run code when loaded \(it references (os|posix)\.system") as caught:
        load_detector(path)

    assert "\n" not in str(caught.value)
    assert str(path) in str(caught.value)
    assert not marker.exists()


def test_torchscript_archive_is_never_handed_to_torch_jit(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.save({"weight": torch.zeros(1)}, path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("scripted/constants.pkl", b"")
    with pytest.raises(CheckpointError, match="TorchScript"):
        read_module_pickle(path)


# --- EfficientNet-Lite0 ------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0_classifier() -> torch.nn.Module:
    return load_lite0_imagenet_classifier()


def test_lite0_with_shipped_weights_recognises_imagenet_classes(lite0_classifier):
    images = LITE0_INPUT.prepare([skimage.data.chelsea(), skimage.data.coffee()])
    with torch.no_grad():
        predicted = lite0_classifier(images).argmax(1).tolist()
    cat, coffee = predicted
    assert 281 <= cat <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert coffee in (967, 968)  # espresso, cup


def test_pretrained_lite0_detector_starts_from_imagenet_backbone(lite0_classifier):
    detector = pretrained_lite0_detector()
    imagenet = lite0_classifier.state_dict()
    backbone = detector.efficientnet.state_dict()
    assert set(imagenet) - set(backbone) == {"_fc.weight", "_fc.bias"}
    assert all(torch.equal(backbone[key], imagenet[key]) for key in backbone)
    assert detector.classifier.weight.shape == (1, 1280)
    assert detector.input_spec == LITE0_INPUT
    with torch.no_grad():
        assert detector.eval().fake_logit(torch.zeros(3, 3, 64, 64)).shape == (3,)


# --- EfficientNet-B4 and B4 with attention (Bonettini et al. layout) ---------------------


def b4_input() -> torch.Tensor:
    return torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def b4():
    return efficientnet_b4().eval()


@pytest.fixture(scope="module")
def b4_att():
    return fill_by_rule(efficientnet_b4_att())


def test_b4_key_layout_is_the_released_one(b4):
    state = b4.state_dict()
    assert len(state) == 706
    assert not any(key.startswith("efficientnet._fc") or "attconv" in key for key in state)
    spot_checks = {
        "efficientnet._conv_stem.weight": (48, 3, 3, 3),
        "efficientnet._blocks.0._depthwise_conv.weight": (48, 1, 3, 3),
        "efficientnet._blocks.0._se_reduce.weight": (12, 48, 1, 1),
        "efficientnet._blocks.0._se_expand.bias": (48,),
        "efficientnet._blocks.0._project_conv.weight": (24, 48, 1, 1),
        "efficientnet._blocks.9._expand_conv.weight": (336, 56, 1, 1),
        "efficientnet._blocks.9._bn2.running_var": (56,),
        "efficientnet._blocks.31._project_conv.weight": (448, 2688, 1, 1),
        "efficientnet._conv_head.weight": (1792, 448, 1, 1),
        "efficientnet._bn1.weight": (1792,),
        "classifier.weight": (1, 1792),
        "classifier.bias": (1,),
    }
    assert {key: tuple(state[key].shape) for key in spot_checks} == spot_checks


def test_b4_att_adds_only_the_attention_conv_on_block_9(b4, b4_att):
    plain = b4.state_dict()
    with_attention = b4_att.state_dict()
    added = {key: tuple(with_attention[key].shape) for key in set(with_attention) - set(plain)}
    assert added == {"efficientnet.attconv.weight": (1, 56, 1, 1), "efficientnet.attconv.bias": (1,)}
    assert set(plain) <= set(with_attention)
    assert b4_att.efficientnet.attention_block == 9


def test_b4_att_reproduces_the_reference_implementation(b4_att):
    reference = np.load(B4_ATT_REFERENCE)
    with torch.no_grad():
        logits, attention = b4_att.forward_with_attention(b4_input())
        pooled, _ = b4_att.efficientnet.pooled(b4_input())
    np.testing.assert_allclose(attention.numpy(), reference["attention"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(pooled.numpy(), reference["pooled"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(logits.numpy(), reference["logits"], atol=1e-5, rtol=0)


def test_b4_forward_shapes_and_attention_map(b4, b4_att):
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits, attention = b4_att.forward_with_attention(images)
        assert b4_att.fake_logit(images).shape == (2,)
        assert b4.forward_with_attention(images)[1] is None
    assert logits.shape == (2, 1)
    assert attention.shape == (2, 1, 8, 8)  # stride 8 at block 9
    assert float(attention.min()) > 0.0 and float(attention.max()) < 1.0


def test_inference_folds_batch_norms_without_changing_scores_or_heatmaps(b4_att):
    import copy

    from fakelab.detection.gradcam import grad_cam
    from fakelab.detection.pipeline import ready_for_inference

    detector = copy.deepcopy(b4_att).eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits, attention = detector.forward_with_attention(images)
    heatmaps = grad_cam(detector, images)
    with pytest.raises(InputError, match="eval mode"):
        fold_batch_norms(copy.deepcopy(detector).train())
    ready = ready_for_inference(detector)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in ready.modules())
    with torch.no_grad():
        folded_logits, folded_attention = ready.forward_with_attention(images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(folded_logits, logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(folded_attention, attention, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grad_cam(ready, images), heatmaps, atol=1e-3, rtol=1e-3)


# --- loading errors and round trips ------------------------------------------------------


def test_wrong_architecture_checkpoint_names_the_first_offending_key(tmp_path):
    path = tmp_path / "lite0.pth"
    torch.save(efficientnet_lite0().state_dict(), path)
    with pytest.raises(CheckpointError) as caught:
        load_detector(path, arch="xception")
    message = str(caught.value)
    assert "\n" not in message
    assert "missing key 'model.conv1.weight'" in message
    assert "its keys are those of efficientnet-lite0" in message


def test_mismatched_shape_is_named_with_both_shapes(tmp_path):
    state = efficientnet_lite0().state_dict()
    state["classifier.weight"] = torch.zeros(2, 1280)
    with pytest.raises(CheckpointError, match=r"'classifier.weight' has shape \(2, 1280\), expected \(1, 1280\)"):
        load_state(efficientnet_lite0(), state, "test state")


def test_unexpected_key_is_named():
    state = efficientnet_lite0().state_dict()
    state["efficientnet.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected key 'efficientnet.extra.weight'"):
        load_state(efficientnet_lite0(), state, "test state")


@pytest.mark.parametrize("name", ["detector.pth", "detector.safetensors"])
def test_saved_detector_loads_back_with_its_architecture(tmp_path, name):
    detector = fill_by_rule(efficientnet_lite0())
    save_detector(detector, tmp_path / name)
    loaded = load_detector(tmp_path / name)
    assert loaded.arch == "efficientnet-lite0" and loaded.input_spec == LITE0_INPUT
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), detector(images), rtol=0, atol=0)


def test_training_checkpoint_layouts_are_unwrapped(tmp_path):
    state = efficientnet_lite0().state_dict()
    path = tmp_path / "bestval.pth"
    torch.save({"net": {f"module.{key}": value for key, value in state.items()}, "epoch": 3}, path)
    loaded, arch = read_checkpoint(path)
    assert arch is None and list(loaded) == list(state)


def test_unrecognisable_or_unreadable_checkpoints(tmp_path):
    unknown = tmp_path / "unknown.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, unknown)
    with pytest.raises(CheckpointError, match="cannot tell which detector"):
        load_detector(unknown)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_detector(corrupt)
    with pytest.raises(CheckpointError, match="not found"):
        load_detector(tmp_path / "absent.pth")
    with pytest.raises(ConfigError, match="unknown detector architecture"):
        build_detector("resnet")


# --- input convention --------------------------------------------------------------------


def test_prepare_crops_resizes_and_normalises():
    spec = InputSpec(size=8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    grey = np.full((10, 20, 3), 255, dtype=np.uint8)
    batch = spec.prepare([grey, np.zeros((8, 8, 3), dtype=np.uint8)])
    assert batch.shape == (2, 3, 8, 8)
    torch.testing.assert_close(batch[0], torch.full((3, 8, 8), 2.0))
    torch.testing.assert_close(batch[1], torch.full((3, 8, 8), -2.0))
    with pytest.raises(InputError, match="RGB"):
        spec.prepare([np.zeros((8, 8, 4), dtype=np.uint8)])
    with pytest.raises(InputError, match="uint8"):
        spec.prepare([np.zeros((8, 8, 3), dtype=np.float32)])
