"""Choose how to run the per-frame FOMM render on this machine, by measuring.

A short calibration times the candidates (backend x thread count x channels-last, then the
batch size of the fastest) on a few random frames, interleaved round by round so that a
machine busy with other work slows them alike, and keeps the fastest whose output stays
within `TOLERANCE` of the plain torch modules. The choice is cached per CPU model, library
versions, config and motion mode in the user cache dir (`fakelab.animation.render.cache_dir`).

Overrides, strongest first: explicit arguments (`--backend`, `--threads`, `--batch-size`),
the environment (`FAKELAB_BACKEND`, `FAKELAB_THREADS`, `FAKELAB_BATCH_SIZE`,
`FAKELAB_CHANNELS_LAST=0/1`), the cached calibration, a new calibration. A named backend
(anything but `auto`) runs as told, with the remaining fields at their defaults (all
cores, batch 1 on CPU); with `auto` the given fields override the calibrated plan's.
`FAKELAB_RECALIBRATE=1` measures again.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from fakelab.animation.fomm import Keypoints
from fakelab.animation.motion import KeypointTransfer, MotionTransfer
from fakelab.animation.networks import FommNetworks
from fakelab.animation.render import (
    BACKENDS,
    PRECISIONS,
    OnnxRuntimeBackend,
    OpenVinoBackend,
    RenderState,
    TorchBackend,
    cache_dir,
    cached_export,
    exportable,
    state_names,
)
from fakelab.errors import FakelabError

TOLERANCE = 1e-4
CALIBRATION_FILE = "render-calibration.json"
BATCH_CANDIDATES = (1, 2, 4)
GPU_BATCH_CANDIDATES = (1, 4, 8, 16)


@dataclass(frozen=True)
class RenderPlan:
    """How the engine runs the per-frame render."""

    backend: str = "torch"
    threads: int = 1
    batch_size: int = 1
    channels_last: bool = False
    precision: str = "fp32"
    compile: bool = False

    def describe(self) -> str:
        extras = [f"{self.threads} thread{'s' if self.threads != 1 else ''}", f"batch {self.batch_size}"]
        if self.channels_last:
            extras.append("channels-last")
        if self.precision != "fp32":
            extras.append(self.precision)
        if self.compile:
            extras.append("compiled")
        return f"{self.backend} ({', '.join(extras)})"


@dataclass
class Measurement:
    plan: RenderPlan
    seconds_per_frame: float
    max_difference: float

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self.plan), "seconds_per_frame": self.seconds_per_frame, "max_difference": self.max_difference}


@dataclass
class Calibration:
    key: str
    plan: RenderPlan
    measurements: list[Measurement] = field(default_factory=list)

    def table(self) -> str:
        rows = [f"{'plan':44s} {'s/frame':>8s} {'max diff':>9s}"]
        for m in sorted(self.measurements, key=lambda m: m.seconds_per_frame):
            flag = "" if m.max_difference < TOLERANCE else "  (rejected: output differs)"
            rows.append(f"{m.plan.describe():44s} {m.seconds_per_frame:8.3f} {m.max_difference:9.1e}{flag}")
        return "\n".join(rows)


def available_backends(device: torch.device) -> list[str]:
    if device.type != "cpu":
        return ["torch"]
    return ["torch"] + [name for name in ("onnxruntime", "openvino") if importlib.util.find_spec(name)]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def calibration_key(networks: FommNetworks, motion: MotionTransfer, device: torch.device, precision: str) -> str:
    """What the choice depends on: the processor, libraries, architecture (not weights), motion mode."""
    versions = [torch.__version__]
    for module in ("onnxruntime", "openvino"):
        if importlib.util.find_spec(module):
            versions.append(f"{module}-{_version(module)}")
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_model()} x{os.cpu_count()}"
    model = json.dumps(dataclasses.asdict(networks.config.model_params), sort_keys=True, default=str)
    return "|".join([hardware, *versions, model, repr(motion), precision])


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "?"


# --- building and timing ------------------------------------------------------------------


class ThreadCount:
    """Run torch with a given number of intra-op threads, restoring the old count after."""

    def __init__(self, threads: int):
        self.threads = threads

    def __enter__(self):
        self.previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)

    def __exit__(self, *exc):
        torch.set_num_threads(self.previous)


def build_backend(plan: RenderPlan, networks: FommNetworks, motion: MotionTransfer):
    """A callable (driving batch, RenderState) -> predictions for the plan."""
    if plan.backend == "torch":
        backend = TorchBackend(networks, motion, plan.channels_last, plan.precision, plan.compile)
        return _WithThreads(backend, plan.threads) if backend.device.type == "cpu" else backend
    if not exportable(networks):
        raise FakelabError(f"the {plan.backend} backend needs a model with a dense motion network: use --backend torch")
    if plan.precision != "fp32" and plan.backend == "onnxruntime":
        raise FakelabError("the onnxruntime backend runs fp32 only: use --backend openvino or torch for bf16")
    names = state_names(networks, motion)
    path = cached_export(networks, motion)
    if plan.backend == "onnxruntime":
        return OnnxRuntimeBackend(path, names, plan.threads)
    if plan.backend == "openvino":
        return OpenVinoBackend(path, names, plan.threads, plan.precision)
    raise FakelabError(f"unknown render backend '{plan.backend}': use one of {', '.join(BACKENDS)}")


class _WithThreads:
    def __init__(self, backend, threads: int):
        self.backend, self.threads, self.name = backend, threads, backend.name

    def __call__(self, driving, state):
        with ThreadCount(self.threads):
            return self.backend(driving, state)


@dataclass
class Probe:
    """Random source and driving frames with the state the graph needs, for timing and checks."""

    driving: torch.Tensor
    state: RenderState
    reference: torch.Tensor  # the plain torch modules' predictions

    @classmethod
    @torch.inference_mode()
    def make(cls, networks: FommNetworks, motion: MotionTransfer, frames: int, device: torch.device, seed: int = 0) -> Probe:
        generator = torch.Generator().manual_seed(seed)
        width, height = networks.config.image_size
        source = torch.rand(1, 3, height, width, generator=generator).to(device)
        driving = torch.rand(frames, 3, height, width, generator=generator).to(device)
        kp_source = networks.kp_detector(source)
        prepared = networks.generator.prepare(source, kp_source)
        initial = networks.kp_detector(driving[:1])
        transfer = KeypointTransfer(motion, kp_source, Keypoints(initial.value, initial.jacobian) if motion.relative else None)
        reference = networks.generator.render(prepared, transfer(networks.kp_detector(driving)), with_deformed=False)["prediction"]
        return cls(driving, RenderState.build(prepared, transfer, state_names(networks, motion)), reference.float().cpu())


def run_batches(backend, driving: torch.Tensor, state: RenderState, batch_size: int) -> torch.Tensor:
    return torch.cat([backend(chunk, state).cpu() for chunk in driving.split(batch_size)])


def calibrate(
    networks: FommNetworks,
    motion: MotionTransfer,
    device: torch.device = torch.device("cpu"),
    precision: str = "fp32",
    backends: list[str] | None = None,
    frames: int = 2,
    rounds: int = 2,
    log: Callable[[str], None] = lambda message: None,
) -> Calibration:
    """Time the candidate plans and pick the fastest that keeps the output (see the module doc)."""
    networks = networks.to(device).eval()
    backends = backends or available_backends(device)
    cores = os.cpu_count() or 1
    thread_counts = sorted({1, cores}) if device.type == "cpu" else [1]
    candidates = []
    for backend in backends:
        if (not exportable(networks) and backend != "torch") or (backend == "onnxruntime" and precision != "fp32"):
            continue
        for threads in thread_counts:
            candidates.append(RenderPlan(backend, threads, 1, precision=precision))
            if backend == "torch" and device.type == "cpu":
                candidates.append(RenderPlan(backend, threads, 1, channels_last=True, precision=precision))
    probe = Probe.make(networks, motion, max(frames, max(BATCH_CANDIDATES)), device)
    log(f"calibrating the render on {len(candidates)} plans ({frames} frames each, best of {rounds} rounds)")
    # bf16/fp16 are opt-in: their error is reported, not held against the tolerance.
    tolerance = TOLERANCE if precision == "fp32" else float("inf")
    first = _measure(candidates, networks, motion, probe, frames, rounds)
    accepted = [m for m in first if m.max_difference < tolerance] or [m for m in first if m.plan.backend == "torch"]
    best = min(accepted, key=lambda m: m.seconds_per_frame)
    batch_sizes = GPU_BATCH_CANDIDATES if device.type == "cuda" else BATCH_CANDIDATES
    batched = [dataclasses.replace(best.plan, batch_size=size) for size in batch_sizes if size != 1]
    second = _measure([best.plan, *batched], networks, motion, probe, max(frames, max(batch_sizes[:3])), rounds)
    winner = min((m for m in second if m.max_difference < tolerance), key=lambda m: m.seconds_per_frame, default=best)
    measurements = [m for m in first if m.plan != best.plan] + second
    return Calibration(calibration_key(networks, motion, device, precision), winner.plan, measurements)


def _measure(plans, networks, motion, probe: Probe, frames: int, rounds: int) -> list[Measurement]:
    built = {plan: build_backend(plan, networks, motion) for plan in plans}
    seconds = {plan: float("inf") for plan in plans}
    differences = {}
    for plan, backend in built.items():  # warm-up, and the output check
        count = max(frames, plan.batch_size) // plan.batch_size * plan.batch_size
        out = run_batches(backend, probe.driving[:count], probe.state, plan.batch_size)
        differences[plan] = float((out - probe.reference[:count]).abs().max())
    for round_ in range(rounds):  # interleaved, so that load from elsewhere hits every plan alike
        fastest = min(seconds.values())
        for plan, backend in built.items():
            if round_ > 0 and seconds[plan] > 2 * fastest:
                continue  # out of the running: no need to time it again
            count = max(frames, plan.batch_size) // plan.batch_size * plan.batch_size
            started = time.perf_counter()
            run_batches(backend, probe.driving[:count], probe.state, plan.batch_size)
            seconds[plan] = min(seconds[plan], (time.perf_counter() - started) / count)
    return [Measurement(plan, seconds[plan], differences[plan]) for plan in plans]


def precision_error(plan: RenderPlan, networks: FommNetworks, motion: MotionTransfer, device: torch.device) -> float:
    """Max difference of the plan's predictions from the fp32 torch modules', on random frames."""
    probe = Probe.make(networks, motion, 2, device)
    out = run_batches(build_backend(plan, networks, motion), probe.driving, probe.state, plan.batch_size)
    return float((out - probe.reference).abs().max())


# --- the cache and the overrides ----------------------------------------------------------


def _cache_file() -> Path:
    return cache_dir() / CALIBRATION_FILE


def read_cached(key: str) -> RenderPlan | None:
    try:
        entries = json.loads(_cache_file().read_text())
        return RenderPlan(**entries[key]["plan"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_cached(calibration: Calibration) -> None:
    path = _cache_file()
    try:
        entries = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        entries = {}
    entries[calibration.key] = {
        "plan": dataclasses.asdict(calibration.plan),
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
        "measurements": [m.to_json() for m in calibration.measurements],
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(entries, indent=1))
        os.replace(partial, path)
    except OSError:
        pass  # a read-only cache only costs a calibration next time


def environment_overrides() -> dict:
    """Plan fields the environment sets (FAKELAB_BACKEND, _THREADS, _BATCH_SIZE, _CHANNELS_LAST)."""
    overrides: dict = {}
    try:
        if os.environ.get("FAKELAB_BACKEND"):
            overrides["backend"] = os.environ["FAKELAB_BACKEND"]
        if os.environ.get("FAKELAB_THREADS"):
            overrides["threads"] = int(os.environ["FAKELAB_THREADS"])
        if os.environ.get("FAKELAB_BATCH_SIZE"):
            overrides["batch_size"] = int(os.environ["FAKELAB_BATCH_SIZE"])
    except ValueError as error:
        raise FakelabError(f"FAKELAB_THREADS and FAKELAB_BATCH_SIZE take whole numbers: {error}") from None
    if os.environ.get("FAKELAB_CHANNELS_LAST"):
        overrides["channels_last"] = os.environ["FAKELAB_CHANNELS_LAST"] not in ("0", "false", "no")
    return overrides


def check_plan(plan: RenderPlan, device: torch.device) -> RenderPlan:
    if plan.backend not in BACKENDS:
        raise FakelabError(f"unknown render backend '{plan.backend}': use one of {', '.join(BACKENDS)}")
    if plan.precision not in PRECISIONS:
        raise FakelabError(f"unknown precision '{plan.precision}': use one of {', '.join(PRECISIONS)}")
    if plan.backend != "torch" and device.type != "cpu":
        raise FakelabError(f"the {plan.backend} backend runs on CPU only: use --backend torch on {device}")
    if plan.backend != "torch" and not importlib.util.find_spec(plan.backend):
        raise FakelabError(f"the {plan.backend} backend is not installed: pip install {plan.backend}")
    if plan.threads < 1 or plan.batch_size < 1:
        raise FakelabError("threads and batch size must be at least 1")
    if plan.precision == "fp16" and device.type == "cpu":
        raise FakelabError("fp16 runs on GPU only: use --precision bf16 on CPU")
    return plan


def check_request(requested: dict, device: torch.device) -> None:
    """Refuse impossible requests when the animator is built, before any work starts."""
    backend, precision = requested.get("backend"), requested.get("precision")
    if backend not in (None, "auto", *BACKENDS):
        raise FakelabError(f"unknown render backend '{backend}': use auto or one of {', '.join(BACKENDS)}")
    if precision is not None:
        check_plan(RenderPlan(precision=precision), device)
    for name in ("threads", "batch_size"):
        if requested.get(name) is not None and requested[name] < 1:
            raise FakelabError(f"{name.replace('_', ' ')} must be at least 1")


def choose_plan(
    networks: FommNetworks,
    motion: MotionTransfer,
    device: torch.device,
    overrides: dict | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> RenderPlan:
    """The plan to run: overrides (arguments, then environment), else calibrated (cached)."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None and not (k == "backend" and v == "auto")}
    requested = {**environment_overrides(), **given}
    if requested.get("backend") == "auto":  # FAKELAB_BACKEND=auto
        del requested["backend"]
    precision = requested.get("precision", "fp32")
    if "backend" in requested:  # a named backend runs as told: nothing to measure
        from fakelab.animation.engine import default_batch_size

        base = RenderPlan(threads=torch.get_num_threads(), batch_size=default_batch_size(device))
        plan = check_plan(dataclasses.replace(base, **requested), device)
        if plan.precision != "fp32":
            log(f"{plan.precision}: max difference {precision_error(plan, networks, motion, device):.1e} from fp32 "
                "on 2 random frames (opt-in: not faithful to the model)")
        return plan
    key = calibration_key(networks, motion, device, precision)
    plan = None if os.environ.get("FAKELAB_RECALIBRATE") else read_cached(key)
    if plan is None:
        calibration = calibrate(networks, motion, device, precision, log=log)
        log(calibration.table())
        log(f"chose {calibration.plan.describe()} (cached in {_cache_file()})")
        write_cached(calibration)
        plan = calibration.plan
    return check_plan(dataclasses.replace(plan, **requested), device)
