"""Detector scoring on the exported backends gives the torch detector's logits (within 1e-4)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from fakelab.detection.backends import with_backend
from fakelab.detection.checkpoint import pretrained_lite0_detector
from fakelab.detection.pipeline import ready_for_inference, score_frames
from fakelab.detection.xception import XceptionDetector
from fakelab.errors import FakelabError

BACKENDS = [name for name in ("onnxruntime", "openvino") if importlib.util.find_spec(name)]


@pytest.mark.parametrize("build", [pretrained_lite0_detector, XceptionDetector], ids=["lite0", "xception"])
def test_exported_backends_keep_the_logits(build):
    torch.manual_seed(0)
    detector = build()
    head = [module for module in detector.modules() if isinstance(module, torch.nn.Linear)][-1]
    head.weight.data.mul_(100)  # untrained features differ little: make the logits tell crops apart
    detector = ready_for_inference(detector)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (120 + 10 * i, 120 + 10 * i, 3), dtype=np.uint8) for i in range(5)]
    expected = score_frames(detector, crops, batch_size=2)
    assert np.ptp(expected) > 1e-3  # logits that differ, so that a mix-up would show
    for backend in BACKENDS:
        exported = with_backend(detector, backend, threads=1)
        assert exported.arch == detector.arch
        assert np.abs(score_frames(exported, crops, batch_size=2) - expected).max() < 1e-4, backend


def test_unknown_backend_is_refused():
    with pytest.raises(FakelabError, match="unknown detector backend 'tensorrt'"):
        with_backend(ready_for_inference(pretrained_lite0_detector()), "tensorrt")


def test_detect_cli_backend_gives_the_torch_score(media, tmp_path, capsys):
    from fakelab.cli import main
    from fakelab.detection.checkpoint import save_detector

    torch.manual_seed(0)
    checkpoint = tmp_path / "lite0.pt"
    save_detector(pretrained_lite0_detector(), checkpoint)
    scores = {}
    for backend in ["torch", *BACKENDS]:
        assert main(["detect", str(media / "s7.jpg"), "--checkpoint", str(checkpoint), "--backend", backend, "--json"]) == 0
        scores[backend] = json.loads(capsys.readouterr().out)["results"][0]["score"]
    assert all(abs(score - scores["torch"]) < 1e-5 for score in scores.values()), scores
    if BACKENDS:
        report = tmp_path / "report.html"
        code = main(["detect", str(media / "s7.jpg"), "--checkpoint", str(checkpoint), "--backend", BACKENDS[0], "--report", str(report)])
        err = capsys.readouterr().err
        assert code != 0 and "--report needs gradients" in err and err.count("\n") == 1 and not report.exists()
