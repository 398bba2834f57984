"""`fakelab detect` without a checkpoint (the forensic cues), `--method all`, ensembles of
checkpoints, and Inception v3 in torchvision's state_dict layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fakelab.cli import main
from fakelab.detection.checkpoint import load_detector, save_detector
from fakelab.detection.efficientnet import efficientnet_lite0
from fakelab.detection.ensemble import EnsembleDetector
from fakelab.detection.inception import InceptionV3, InceptionV3Detector
from fakelab.detection.spec import IMAGENET_MEAN, DeepfakeDetector, InputSpec

TORCHVISION_INCEPTION_V3_PARAMETERS = 27_161_264


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def lite0_pair(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ensemble")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        detector = efficientnet_lite0()
        torch.nn.init.normal_(detector.classifier.weight, std=0.5)
        torch.nn.init.constant_(detector.classifier.bias, (-1.0, 1.5)[seed])  # members that disagree
        paths.append(folder / f"lite0_{seed}.pt")
        save_detector(detector, paths[-1])
    return paths[0], paths[1]


def test_detect_without_checkpoint_scores_the_cues(capsys, media, tmp_path):
    report = tmp_path / "cues.html"
    code, out, err = run_cli(capsys, "detect", media / "d0.mp4", "--seconds", "1", "--report", report)
    assert code == 0, err
    lines = out.splitlines()
    # provenance is reported before any score: three lines that say no fakelab mark was found
    assert lines[0] == "provenance: no fakelab provenance found" and lines[2] == "  C2PA manifest: none"
    first = lines[3]
    assert first.startswith(f"{media / 'd0.mp4'}: ") and "method cues, probability fake" in first
    assert "25 frames, face found in 25" in first and "lip-sync: not measured (no audio stream)" in first
    assert "landmark_jitter" in out and "pose_inconsistency" in out and "lip_sync_confidence" in out
    text = report.read_text()
    assert text.startswith("<!DOCTYPE html>") and "driven by" in text and text.count("data:image/png;base64,") == 1


def test_cues_json_has_each_cue_its_share_and_the_timeline(capsys, media):
    code, out, err = run_cli(capsys, "detect", media / "d0.mp4", "--seconds", "0.6", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["method"] == "cues" and document["checkpoint"] is None
    (result,) = document["results"]
    assert result["frames_analysed"] == 15 and len(result["timeline"]["time"]) == 15
    assert set(result["cues"]) == set(result["contributions"])
    logit = sum(result["contributions"].values())
    from fakelab.detection.cues import load_cue_model

    assert result["logit"] == pytest.approx(load_cue_model().bias + logit)
    assert result["probability_fake"] == pytest.approx(1 / (1 + np.exp(-result["logit"])))
    assert result["lip_sync"]["has_audio"] is False and result["lip_sync"]["reason"] == "no audio stream"


def test_method_all_averages_the_cnn_and_the_cue_logits(capsys, media, lite0_pair):
    code, out, err = run_cli(
        capsys, "detect", media / "d0.mp4", "--method", "all", "--checkpoint", lite0_pair[0], "--seconds", "0.6",
        "--frames", "2", "--json",
    )
    assert code == 0, err
    (result,) = json.loads(out)["results"]
    members = {m["name"]: m["logit"] for m in result["members"]}
    assert set(members) == {"efficientnet-lite0", "cues"}
    assert result["logit"] == pytest.approx(np.mean(list(members.values())))
    assert members["cues"] == pytest.approx(result["cues"]["logit"])


def test_an_ensemble_scores_the_mean_of_its_members_logits(capsys, media, lite0_pair):
    def frame_logits(*checkpoints):
        argv = ["detect", media / "d0.mp4", "--frames", "2", "--json"]
        for checkpoint in checkpoints:
            argv += ["--checkpoint", checkpoint]
        code, out, err = run_cli(capsys, *argv)
        assert code == 0, err
        document = json.loads(out)
        return document, np.array([frame["logit"] for frame in document["results"][0]["frames"]])

    _, first = frame_logits(lite0_pair[0])
    _, second = frame_logits(lite0_pair[1])
    document, both = frame_logits(*lite0_pair)
    assert np.abs(first - second).min() > 1  # the members disagree, so the mean is a real test
    np.testing.assert_allclose(both, (first + second) / 2, atol=1e-4)
    assert document["arch"] == "ensemble(efficientnet-lite0 + efficientnet-lite0)"


class TinyDetector(DeepfakeDetector):
    """A small member with its own input size and normalisation."""

    arch = "tiny"
    input_spec = InputSpec(size=64, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.head = torch.nn.Linear(4, 1)

    def fake_logit(self, images):
        return self.classify(self.embed(images))

    def embed(self, images):
        return torch.nn.functional.adaptive_avg_pool2d(self.conv(images), 1).flatten(1)

    def classify(self, embedding):
        return self.head(embedding)[:, 0]

    def cam_layer(self):
        return self.conv


def test_ensemble_detector_of_different_input_sizes(lite0_pair):
    torch.manual_seed(0)
    members = [load_detector(lite0_pair[0]), TinyDetector().eval()]
    ensemble = EnsembleDetector(members).eval()
    assert ensemble.input_spec.size == 224 and ensemble.arch == "ensemble(efficientnet-lite0 + tiny)"
    images = torch.rand(2, 3, 224, 224)
    small = torch.nn.functional.interpolate(images, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        expected = [
            members[0].fake_logit(members[0].input_spec.normalize(images)),
            members[1].fake_logit(members[1].input_spec.normalize(small)),
        ]
        np.testing.assert_allclose(ensemble.fake_logit(images), (expected[0] + expected[1]) / 2, atol=1e-5)
        np.testing.assert_allclose(ensemble.classify(ensemble.embed(images)), ensemble.fake_logit(images), atol=1e-5)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "cnn"], "--method cnn needs --checkpoint (or use --method cues, which needs none)"),
        (["--method", "all"], "--method all needs --checkpoint (or use --method cues, which needs none)"),
        (["--seconds", "0"], "argument --seconds: must be above 0, got 0"),
    ],
)
def test_bad_cue_options_are_one_line(capsys, media, tmp_path, argv, message):
    report = tmp_path / "r.html"
    code, out, err = run_cli(capsys, "detect", media / "d0.mp4", *argv, "--report", report)
    # A bad option value is a usage error (2); an option that needs another is a bad request (1).
    assert (code, out) == (2 if "argument" in message else 1, "")
    assert err.startswith(f"fakelab detect: error: {message}") and err.count("\n") == 1
    assert not report.exists() and list(tmp_path.iterdir()) == []


def test_cues_refuse_a_checkpoint_and_an_image(capsys, media, lite0_pair):
    code, _, err = run_cli(capsys, "detect", media / "d0.mp4", "--method", "cues", "--checkpoint", lite0_pair[0])
    assert code == 1 and err == "fakelab detect: error: --method cues uses no checkpoint: drop --checkpoint, or use --method all for both\n"
    code, _, err = run_cli(capsys, "detect", media / "s7.jpg")
    assert code == 1 and err == (
        f"fakelab detect: error: {media / 's7.jpg'} is an image: the cues need a video (use --method cnn with a checkpoint)\n"
    )


def torchvision_inception_v3_layout(classes: int) -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's `inception_v3(aux_logits=True, num_classes=classes)`,
    written out from its published module list (not from fakelab's module)."""
    convs: list[tuple[str, int, int, tuple[int, int]]] = [
        ("Conv2d_1a_3x3", 3, 32, (3, 3)), ("Conv2d_2a_3x3", 32, 32, (3, 3)), ("Conv2d_2b_3x3", 32, 64, (3, 3)),
        ("Conv2d_3b_1x1", 64, 80, (1, 1)), ("Conv2d_4a_3x3", 80, 192, (3, 3)),
    ]

    def block(prefix, rows):
        convs.extend((f"{prefix}.{name}", cin, cout, k if isinstance(k, tuple) else (k, k)) for name, cin, cout, k in rows)

    for name, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        block(name, [("branch1x1", cin, 64, 1), ("branch5x5_1", cin, 48, 1), ("branch5x5_2", 48, 64, 5),
                     ("branch3x3dbl_1", cin, 64, 1), ("branch3x3dbl_2", 64, 96, 3), ("branch3x3dbl_3", 96, 96, 3),
                     ("branch_pool", cin, pool, 1)])
    block("Mixed_6a", [("branch3x3", 288, 384, 3), ("branch3x3dbl_1", 288, 64, 1), ("branch3x3dbl_2", 64, 96, 3),
                       ("branch3x3dbl_3", 96, 96, 3)])
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        block(name, [("branch1x1", 768, 192, 1), ("branch7x7_1", 768, c7, 1), ("branch7x7_2", c7, c7, (1, 7)),
                     ("branch7x7_3", c7, 192, (7, 1)), ("branch7x7dbl_1", 768, c7, 1), ("branch7x7dbl_2", c7, c7, (7, 1)),
                     ("branch7x7dbl_3", c7, c7, (1, 7)), ("branch7x7dbl_4", c7, c7, (7, 1)),
                     ("branch7x7dbl_5", c7, 192, (1, 7)), ("branch_pool", 768, 192, 1)])
    block("AuxLogits", [("conv0", 768, 128, 1), ("conv1", 128, 768, 5)])
    block("Mixed_7a", [("branch3x3_1", 768, 192, 1), ("branch3x3_2", 192, 320, 3), ("branch7x7x3_1", 768, 192, 1),
                       ("branch7x7x3_2", 192, 192, (1, 7)), ("branch7x7x3_3", 192, 192, (7, 1)),
                       ("branch7x7x3_4", 192, 192, 3)])
    for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        block(name, [("branch1x1", cin, 320, 1), ("branch3x3_1", cin, 384, 1), ("branch3x3_2a", 384, 384, (1, 3)),
                     ("branch3x3_2b", 384, 384, (3, 1)), ("branch3x3dbl_1", cin, 448, 1),
                     ("branch3x3dbl_2", 448, 384, 3), ("branch3x3dbl_3a", 384, 384, (1, 3)),
                     ("branch3x3dbl_3b", 384, 384, (3, 1)), ("branch_pool", cin, 192, 1)])
    layout: dict[str, tuple[int, ...]] = {}
    for name, cin, cout, (kh, kw) in convs:
        layout[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for part in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{name}.bn.{part}"] = (cout,)
        layout[f"{name}.bn.num_batches_tracked"] = ()
    layout.update({"AuxLogits.fc.weight": (classes, 768), "AuxLogits.fc.bias": (classes,),
                   "fc.weight": (classes, 2048), "fc.bias": (classes,)})
    return layout


def test_inception_v3_has_torchvisions_parameters_and_keys():
    network = InceptionV3(num_classes=1000)
    assert sum(p.numel() for p in network.parameters()) == TORCHVISION_INCEPTION_V3_PARAMETERS
    layout = torchvision_inception_v3_layout(1000)
    assert {key: tuple(t.shape) for key, t in network.state_dict().items()} == layout


def test_a_state_dict_in_torchvisions_layout_loads_as_the_single_logit_detector(tmp_path):
    generator = torch.Generator().manual_seed(0)
    def generated(key: str, shape: tuple[int, ...]) -> torch.Tensor:
        if key.endswith("num_batches_tracked"):
            return torch.randint(0, 5, shape, generator=generator)
        if key.endswith("conv.weight"):  # scaled by fan-in so that 94 layers stay finite
            return torch.randn(shape, generator=generator) / np.sqrt(np.prod(shape[1:]))
        return torch.rand(shape, generator=generator) + (0.5 if key.endswith(("running_var", "bn.weight")) else 0.0)

    state = {key: generated(key, shape) for key, shape in torchvision_inception_v3_layout(1).items()}
    path = tmp_path / "inception_v3_ffpp.pth"
    torch.save(state, path)
    detector = load_detector(path)  # the architecture is recognised from the keys
    assert detector.arch == "inception-v3" and detector.input_spec.size == 299
    assert torch.equal(detector.state_dict()["Mixed_6e.branch7x7dbl_5.conv.weight"], state["Mixed_6e.branch7x7dbl_5.conv.weight"])
    with torch.no_grad():
        logits = detector.fake_logit(detector.input_spec.prepare([np.full((320, 320, 3), 128, np.uint8)]))
    assert logits.shape == (1,) and torch.isfinite(logits).all()
    # torchvision's transform_input=True maps ImageNet-normalised input to (x - 0.5) / 0.5: our spec.
    assert detector.input_spec.mean == (0.5, 0.5, 0.5) and IMAGENET_MEAN != detector.input_spec.mean
