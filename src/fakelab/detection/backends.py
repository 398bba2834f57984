"""Detector scoring on an exported backend: the detector's `fake_logit` exported to ONNX
(batch norms already folded) and run by ONNX Runtime or OpenVINO's CPU plugin.

`exported_detector(detector, "openvino")` returns a stand-in that `score_frames` and
`score_file` take like the detector itself (same `arch`, `input_spec`, `fake_logit`); it has
no gradients, so attacks and Grad-CAM keep the torch detector. The export is cached in the
user cache dir by a digest of the weights (fakelab.animation.render.cache_dir).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fakelab.detection.spec import DeepfakeDetector
from fakelab.errors import FakelabError

DETECTOR_BACKENDS = ("torch", "onnxruntime", "openvino")


class _FakeLogit(nn.Module):
    def __init__(self, detector: DeepfakeDetector):
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.detector.fake_logit(images)


def _digest(detector: DeepfakeDetector) -> str:
    digest = hashlib.sha256(f"{detector.arch}|{torch.__version__}".encode())
    for name, tensor in sorted(detector.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def export_detector(detector: DeepfakeDetector, path: Path) -> Path:
    size = detector.input_spec.size
    module = _FakeLogit(detector.cpu().eval())
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.rand(2, 3, size, size),), str(partial), input_names=["images"], output_names=["logit"],
            dynamic_axes={"images": {0: "batch"}, "logit": {0: "batch"}}, opset_version=17, dynamo=False,
        )
    os.replace(partial, path)
    return path


class ExportedDetector(nn.Module):
    """The detector's `fake_logit` run by ONNX Runtime or OpenVINO (CPU, no gradients)."""

    def __init__(self, detector: DeepfakeDetector, backend: str, threads: int | None = None):
        super().__init__()
        from fakelab.animation.render import cache_dir

        if backend not in ("onnxruntime", "openvino"):
            raise FakelabError(f"unknown detector backend '{backend}': use one of {', '.join(DETECTOR_BACKENDS)}")
        self.arch = detector.arch
        self.input_spec = detector.input_spec
        self.backend = backend
        self._device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # score_frames asks for a device
        threads = threads or torch.get_num_threads()
        path = cache_dir() / "onnx" / f"detector-{detector.arch}-{_digest(detector)}.onnx"
        if not path.exists():
            export_detector(detector, path)
        if backend == "onnxruntime":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self._run = lambda images: session.run(["logit"], {"images": images})[0]
        else:
            import openvino as ov

            core = ov.Core()
            compiled = core.compile_model(
                core.read_model(str(path)), "CPU",
                {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1},
            )
            request = compiled.create_infer_request()
            self._run = lambda images: np.array(request.infer({"images": images})[compiled.output(0)])

    def fake_logit(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._run(np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fake_logit(images)


def with_backend(detector: DeepfakeDetector, backend: str = "torch", threads: int | None = None) -> DeepfakeDetector:
    """The detector itself for `torch`, else its exported stand-in."""
    if backend == "torch":
        return detector
    if detector_device_type(detector) != "cpu":
        raise FakelabError(f"the {backend} detector backend runs on CPU only: use --backend torch on GPU")
    return ExportedDetector(detector, backend, threads)


def detector_device_type(detector: nn.Module) -> str:
    return next(detector.parameters()).device.type
