"""The per-frame FOMM render as one graph, and the backends that run it.

Animating a source means, for each batch of driving frames: driving keypoints, their
transfer to the source, dense motion, and the generator's warp-and-decode. Everything that
depends on the source alone (its features, Gaussians, keypoints, the transfer's constants)
is prepared once and handed to the graph as inputs, so that one export of the graph serves
every source and every driving video of a checkpoint.

Backends:
- `torch`: the modules themselves, optionally in channels-last memory order, and on GPU
  optionally under fp16/bf16 autocast or `torch.compile` (CUDA graphs);
- `onnxruntime` and `openvino`: the graph exported to ONNX (TorchScript exporter) and run
  by ONNX Runtime or OpenVINO's CPU plugin, both of which fuse the convolutions with their
  batch norms and activations and keep their own thread pools.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fakelab.animation.fomm import Keypoints
from fakelab.animation.fomm.dense_motion import MotionSource
from fakelab.animation.fomm.generator import PreparedSource
from fakelab.animation.motion import KeypointTransfer, MotionTransfer
from fakelab.animation.networks import FommNetworks
from fakelab.errors import FakelabError

BACKENDS = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "fp16")
EXPORT_BATCH = 2  # >1 so that the tracer records the source's broadcast over the batch


def exportable(networks: FommNetworks) -> bool:
    """The exported graph covers models with a dense motion network (all official configs)."""
    return networks.generator.dense_motion_network is not None


def state_names(networks: FommNetworks, motion: MotionTransfer) -> list[str]:
    """Names of the per-source graph inputs, in order (the driving batch comes first)."""
    jacobian = networks.kp_detector.jacobian is not None
    names = ["features", "motion_image", "source_gaussians", "kp_source_value"]
    if jacobian:
        names.append("kp_source_jacobian")
    if motion.relative:
        names += ["kp_initial_value", "scale"]
        if jacobian and motion.relative_jacobian:
            names.append("initial_inverse")
    return names


@dataclass
class RenderState:
    """The per-source inputs of the graph, by name."""

    tensors: dict[str, torch.Tensor]

    @classmethod
    def build(cls, prepared: PreparedSource, transfer: KeypointTransfer, names: list[str]) -> RenderState:
        motion = prepared.motion
        available = {
            "features": prepared.features,
            "motion_image": motion.image,
            "source_gaussians": motion.gaussians,
            "kp_source_value": motion.kp.value,
            "kp_source_jacobian": motion.kp.jacobian,
        }
        if transfer.mode.relative:
            available["kp_initial_value"] = transfer.kp_initial.value
            available["scale"] = torch.as_tensor(transfer.scale, dtype=prepared.features.dtype).reshape(1)
            if transfer.uses_initial_jacobian:
                available["initial_inverse"] = transfer.initial_inverse
        return cls({name: available[name].contiguous() for name in names})

    def ordered(self, names: list[str]) -> tuple[torch.Tensor, ...]:
        return tuple(self.tensors[name] for name in names)


class FrameRenderer(nn.Module):
    """driving batch + per-source state -> predictions; the graph that backends run."""

    def __init__(self, networks: FommNetworks, motion: MotionTransfer):
        super().__init__()
        if not exportable(networks):
            raise FakelabError("this model has no dense motion network: only the torch backend runs it")
        self.kp_detector = networks.kp_detector
        self.generator = networks.generator
        self.motion = motion
        self.names = state_names(networks, motion)

    def forward(self, driving: torch.Tensor, *state: torch.Tensor) -> torch.Tensor:
        inputs = dict(zip(self.names, state))
        kp_source = Keypoints(inputs["kp_source_value"], inputs.get("kp_source_jacobian"))
        kp_initial = Keypoints(inputs["kp_initial_value"]) if self.motion.relative else None
        transfer = KeypointTransfer(
            self.motion, kp_source, kp_initial, scale=inputs.get("scale", 1.0), initial_inverse=inputs.get("initial_inverse")
        )
        motion_source = MotionSource(
            image=inputs["motion_image"],
            kp=kp_source,
            gaussians=inputs["source_gaussians"],
            grid=_grid_like(inputs["motion_image"]),
        )
        prepared = PreparedSource(image=None, features=inputs["features"], motion=motion_source)
        kp_norm = transfer(self.kp_detector(driving))
        return self.generator.render(prepared, kp_norm, with_deformed=False)["prediction"]


def _grid_like(image: torch.Tensor) -> torch.Tensor:
    from fakelab.animation.fomm.keypoints import coordinate_grid

    return coordinate_grid(image.shape[2], image.shape[3], image)


# --- backends -----------------------------------------------------------------------------


class TorchBackend:
    """The modules in eager mode (channels-last optional); on GPU, autocast and torch.compile."""

    name = "torch"

    def __init__(
        self,
        networks: FommNetworks,
        motion: MotionTransfer,
        channels_last: bool = False,
        precision: str = "fp32",
        compile: bool = False,
    ):
        if channels_last:  # a copy: the caller's modules keep their memory order
            networks = copy.deepcopy(networks).to(memory_format=torch.channels_last)
        self.renderer = FrameRenderer(networks, motion).eval()
        self.device = next(networks.parameters()).device
        self.channels_last = channels_last
        self.precision = precision
        self.run_graph = self.renderer
        self.graphs = compile and self.device.type == "cuda"
        if compile:
            # On CUDA "reduce-overhead" records CUDA graphs of the per-frame render (untested here: no GPU).
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self.run_graph = torch.compile(self.renderer, mode=mode, dynamic=False)

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    @torch.inference_mode()
    def __call__(self, driving: torch.Tensor, state: RenderState) -> torch.Tensor:
        driving = driving.to(self.device)
        if self.channels_last:
            driving = driving.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            out = self.run_graph(driving, *state.ordered(self.renderer.names))
        # CUDA graphs reuse their output memory on the next call: hand out a copy.
        return out.float().clone() if self.graphs else out.float()


def export_onnx(networks: FommNetworks, motion: MotionTransfer, path: Path) -> Path:
    """Write the per-frame graph of these networks to `path` (dynamic driving batch)."""
    renderer = FrameRenderer(networks.cpu(), motion).eval()
    width, height = networks.config.image_size
    source = torch.rand(1, 3, height, width)
    with torch.no_grad(), warnings.catch_warnings():
        kp_source = networks.kp_detector(source)
        prepared = networks.generator.prepare(source, kp_source)
        transfer = KeypointTransfer(motion, kp_source, kp_source if motion.relative else None)
        state = RenderState.build(prepared, transfer, renderer.names)
        driving = torch.rand(EXPORT_BATCH, 3, height, width)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + f".{os.getpid()}.partial")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding")
        torch.onnx.export(
            renderer,
            (driving, *state.ordered(renderer.names)),
            str(partial),
            input_names=["driving", *renderer.names],
            output_names=["prediction"],
            dynamic_axes={"driving": {0: "batch"}, "prediction": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    os.replace(partial, path)
    return path


def weights_digest(networks: FommNetworks, motion: MotionTransfer) -> str:
    """A short hash of the weights, config and motion mode: the key of a cached export."""
    digest = hashlib.sha256()
    digest.update(repr((networks.config, motion, torch.__version__)).encode())
    for name, tensor in sorted(networks.kp_detector.state_dict().items()) + sorted(networks.generator.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    """$FAKELAB_CACHE, else $XDG_CACHE_HOME/fakelab, else ~/.cache/fakelab."""
    if os.environ.get("FAKELAB_CACHE"):
        return Path(os.environ["FAKELAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fakelab"


def cached_export(networks: FommNetworks, motion: MotionTransfer) -> Path:
    """The ONNX export of these weights, made once and kept in the user cache."""
    path = cache_dir() / "onnx" / f"fomm-{weights_digest(networks, motion)}.onnx"
    if not path.exists():
        try:
            export_onnx(networks, motion, path)
        except OSError:  # read-only cache: export to a private temporary folder
            path = export_onnx(networks, motion, Path(tempfile.mkdtemp(prefix="fakelab-onnx-")) / path.name)
    return path


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, onnx_path: Path, names: list[str], threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.names = names

    def __call__(self, driving: torch.Tensor, state: RenderState) -> torch.Tensor:
        feed = {"driving": driving.cpu().numpy()}
        feed.update({name: state.tensors[name].cpu().numpy() for name in self.names})
        return torch.from_numpy(self.session.run(["prediction"], feed)[0])


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, onnx_path: Path, names: list[str], threads: int, precision: str = "fp32"):
        import openvino as ov

        core = ov.Core()
        config = {
            "INFERENCE_NUM_THREADS": threads,
            # OpenVINO would pick bf16 by itself on CPUs that have it; fp32 unless asked.
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        self.compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.names = names

    def __call__(self, driving: torch.Tensor, state: RenderState) -> torch.Tensor:
        feed = {"driving": driving.cpu().numpy()}
        feed.update({name: state.tensors[name].cpu().numpy() for name in self.names})
        result = self.request.infer(feed)
        return torch.from_numpy(np.array(result[self.compiled.output(0)]))
