"""Train a First Order Motion Model on a dataset of videos.

A run lives in one folder:
- `config.yaml`: the config it trains (resuming reads it back),
- `checkpoint.pth.tar`: the latest checkpoint, in the reference layout
  (`generator`, `kp_detector`, `discriminator`, `optimizer_*`, `epoch`) plus
  what resuming needs (`step`, `train_state`); rewritten atomically every
  `checkpoint_every` steps, at the end, and when the run is stopped,
- `log.jsonl`, `visualization/`, `tensorboard/` (see `fakelab.training.monitor`).

Training is counted in steps (one batch each); the reference's epochs are
`num_repeats` passes over the dataset, and its learning-rate milestones are
converted to steps with that. Every random choice (samples, augmentations,
equivariance warps) is seeded by the step, so `resume` continues exactly as an
uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from fakelab.animation.checkpoint import Checkpoint
from fakelab.animation.config import FommConfig, load_config
from fakelab.animation.networks import FommNetworks
from fakelab.atomic import atomic_output
from fakelab.datasets import ClipAugmentation, FramesDataset, SampleKeys, TrainingPairs
from fakelab.errors import ConfigError, InputError
from fakelab.training.distributed import ProcessGroup
from fakelab.training.monitor import RunMonitor
from fakelab.training.objective import ReconstructionObjective, discriminator_loss, generator_adversarial_losses
from fakelab.training.params import TrainParams, train_params
from fakelab.training.perceptual import perceptual_network
from fakelab.training.visualize import batch_picture
from fakelab.training.warps import RandomWarp

CHECKPOINT_NAME = "checkpoint.pth.tar"
CONFIG_NAME = "config.yaml"
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
OPTIMISED = ("generator", "kp_detector", "discriminator")


@dataclass(frozen=True)
class TrainOptions:
    steps: int | None = None  # total steps of the run; default: the config's num_epochs
    batch_size: int | None = None  # global batch; default: the config's
    checkpoint_every: int = 1000
    log_every: int = 10
    image_every: int = 500
    workers: int = 2
    device: str = "auto"
    precision: str = "auto"  # auto: fp16 autocast on GPU, fp32 on CPU
    perceptual_weights: str | None = None  # VGG19 weights; default: packaged EfficientNet-Lite0
    init_checkpoint: str | None = None  # start from these weights (e.g. an official checkpoint)
    seed: int = 0
    progress: bool = True
    tensorboard: bool = True


@dataclass(frozen=True)
class TrainResult:
    step: int
    total_steps: int
    checkpoint: Path
    stopped_early: bool
    losses: dict[str, float]
    signal: int | None = None  # the signal that stopped the run early (SIGINT, SIGTERM, SIGHUP)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision '{precision}': use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    if precision != "fp32" and device.type != "cuda":
        raise ConfigError(f"mixed precision ({precision}) needs a GPU; on {device.type} use fp32")
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The generator of one process's random warps at one step."""
    state = np.random.SeedSequence([seed, 2, step, rank]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


class FommTrainer:
    """The networks, their objective and optimisers, and one training step."""

    def __init__(
        self,
        config: FommConfig,
        params: TrainParams,
        device: torch.device,
        perceptual_weights: str | None = None,
        precision: str = "auto",
        group: ProcessGroup = ProcessGroup(),
        seed: int = 0,
    ):
        self.config, self.params, self.device, self.group, self.seed = config, params, device, group, seed
        torch.manual_seed(seed)
        self.networks = FommNetworks(config, with_discriminator=True)
        for name in ("kp_detector", "generator"):
            setattr(self.networks, name, group.sync_batch_norms(getattr(self.networks, name), device))
        self.networks.to(device).train()
        self.perceptual = perceptual_network(perceptual_weights) if any(params.loss_weights.perceptual) else None
        objective = ReconstructionObjective(
            self.networks.kp_detector,
            self.networks.generator,
            self.perceptual,
            params.scales,
            config.model_params.discriminator_params.scales if params.loss_weights.adversarial else (),
            params.loss_weights,
        ).to(device)
        self.objective = group.wrap(objective, device)
        # Built for every config, as the reference does (its checkpoints hold one); trained by -adv configs only.
        self.discriminator = (
            group.wrap(self.networks.discriminator, device)
            if params.loss_weights.adversarial
            else self.networks.discriminator
        )
        learning_rates = {
            "generator": params.lr_generator,
            "kp_detector": params.lr_kp_detector,
            "discriminator": params.lr_discriminator,
        }
        self.optimizers = {
            name: torch.optim.Adam(getattr(self.networks, name).parameters(), lr=lr, betas=tuple(params.adam_betas))
            for name, lr in learning_rates.items()
        }
        self.base_lrs = learning_rates
        self.amp_dtype = autocast_dtype(precision, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)

    @property
    def perceptual_name(self) -> str:
        return self.perceptual.name if self.perceptual is not None else "none"

    def set_learning_rates(self, epoch: int) -> dict[str, float]:
        factor = self.params.lr_factor(epoch)
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = self.base_lrs[name] * factor
        return {name: self.base_lrs[name] * factor for name in self.optimizers}

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def train_step(self, source: torch.Tensor, driving: torch.Tensor, step: int) -> tuple[dict[str, torch.Tensor], dict]:
        """One optimiser step of the keypoint detector and generator, then of the discriminator (adv configs)."""
        weights = self.params.loss_weights
        source, driving = source.to(self.device, non_blocking=True), driving.to(self.device, non_blocking=True)
        warp = None
        if weights.equivariance_value or weights.equivariance_jacobian:
            warp = RandomWarp(
                driving.shape[0], self.params.transform_params, step_generator(self.seed, step, self.group.rank)
            ).to(self.device)
        with self._autocast():
            losses, generated = self.objective(source, driving, warp)
            if weights.adversarial:
                losses.update(generator_adversarial_losses(self.networks.discriminator, generated, weights))
        self._apply(sum(losses.values()), ("generator", "kp_detector"))
        if weights.adversarial:
            with self._autocast():
                scales = self.config.model_params.discriminator_params.scales
                losses["discriminator_gan"] = discriminator_loss(self.discriminator, scales, generated, weights)
            self._apply(losses["discriminator_gan"], ("discriminator",))
        self.scaler.update()
        return {name: value.detach() for name, value in losses.items()}, generated

    def _apply(self, loss: torch.Tensor, names: tuple[str, ...]) -> None:
        self.scaler.scale(loss).backward()
        for name in names:
            self.scaler.step(self.optimizers[name])
            self.optimizers[name].zero_grad(set_to_none=True)

    def checkpoint(self, step: int, epoch: int, batch_size: int) -> Checkpoint:
        """The training state in the reference layout, plus what resuming needs; tensors on the CPU."""
        states = {name: _to_cpu(module.state_dict()) for name, module in self.networks.present().items()}
        extra = {f"optimizer_{name}": _to_cpu(optimizer.state_dict()) for name, optimizer in self.optimizers.items()}
        extra.update(
            epoch=epoch,
            step=step,
            train_state={
                "seed": self.seed,
                "batch_size": batch_size,
                "perceptual": self.perceptual_name,
                "grad_scaler": self.scaler.state_dict(),
            },
        )
        return Checkpoint(states, extra, CHECKPOINT_NAME)

    def restore(self, checkpoint: Checkpoint) -> None:
        checkpoint.load_into(self.networks, require_discriminator=True)
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(checkpoint.extra[f"optimizer_{name}"])
        scaler_state = checkpoint.extra["train_state"].get("grad_scaler")
        if self.scaler.is_enabled() and scaler_state:
            self.scaler.load_state_dict(scaler_state)


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_cpu(item) for item in value]
    return value


def _plain(value):
    """Tuples to lists, for YAML's safe dumper."""
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def write_config(config: FommConfig, path: Path) -> None:
    raw = {**config.sections, "model_params": dataclasses.asdict(config.model_params)}
    with atomic_output(path) as tmp:
        tmp.write_text(yaml.safe_dump(_plain(raw), sort_keys=False))


def _ignore_interrupts(_worker: int) -> None:
    """Data workers leave Ctrl-C to the main process, which stops cleanly after its step."""
    for ignored in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(ignored, signal.SIG_IGN)


class StopRequest:
    """Ctrl-C, SIGTERM or SIGHUP asks the run to stop after the current step (and write a checkpoint).

    A second Ctrl-C stops at once, without a checkpoint.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, announce: bool):
        self.requested = False
        self.signum: int | None = None
        self.announce = announce
        self.previous: dict = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def _handle(self, signum, _frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signum = self.signum or signum
        if self.announce:
            print("\nstopping after this step to write a checkpoint (Ctrl-C again to abort)", file=sys.stderr)

    def __exit__(self, *_exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _remove_stale_partials(run_dir: Path) -> None:
    """Temporary files that a killed run left behind (the checkpoint itself is always whole)."""
    stem = Path(CHECKPOINT_NAME).stem
    for stale in run_dir.glob(f".{stem}.*.partial*"):
        stale.unlink(missing_ok=True)


def _run_config(config: str | Path | None, run_dir: Path, resume: bool) -> FommConfig:
    if config is not None:
        return load_config(config)
    if resume and (run_dir / CONFIG_NAME).is_file():
        return load_config(run_dir / CONFIG_NAME)
    raise ConfigError("no config: pass --config (a bundled name or a YAML file)")


def _check_run_dir(run_dir: Path, resume: bool) -> Checkpoint | None:
    checkpoint_path = run_dir / CHECKPOINT_NAME
    if resume:
        if not checkpoint_path.is_file():
            raise InputError(f"nothing to resume: {run_dir} has no {CHECKPOINT_NAME}")
        checkpoint = Checkpoint.read(checkpoint_path)
        needed = ["step", "train_state", *(f"optimizer_{name}" for name in OPTIMISED)]
        missing = [key for key in needed if key not in checkpoint.extra]
        if missing:
            raise InputError(f"{checkpoint_path} cannot be resumed: it has no '{missing[0]}' (not written by fakelab train?)")
        if not isinstance(checkpoint.extra["train_state"], dict) or not all(
            isinstance(checkpoint.extra[f"optimizer_{name}"], dict) for name in OPTIMISED
        ):
            raise InputError(f"{checkpoint_path} cannot be resumed: its training state is malformed")
        return checkpoint
    if checkpoint_path.exists():
        raise InputError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another output folder")
    return None


def train(
    data: str | Path,
    run_dir: str | Path,
    config: str | Path | None = None,
    options: TrainOptions = TrainOptions(),
    resume: bool = False,
) -> TrainResult:
    """Train (or with `resume`, continue training) a FOMM model on the dataset folder `data`."""
    run_dir = Path(run_dir)
    group = ProcessGroup.from_environment()
    device = group.device(options.device)
    resumed = _check_run_dir(run_dir, resume)
    fomm_config = _run_config(config, run_dir, resume)
    params = train_params(fomm_config)
    state = resumed.extra.get("train_state", {}) if resumed else {}
    seed = state.get("seed", options.seed)
    batch_size = state.get("batch_size") or options.batch_size or params.batch_size
    if resumed and options.batch_size and options.batch_size != batch_size:
        raise ConfigError(f"the run trains with batch size {batch_size}; start a new run to change it")
    if batch_size % group.world_size:
        raise ConfigError(f"batch size {batch_size} does not split over {group.world_size} processes")
    params = dataclasses.replace(params, batch_size=batch_size)

    group.start(device)
    try:
        frames = FramesDataset(
            data,
            fomm_config.frame_shape,
            split="train",
            id_sampling=bool(fomm_config.sections.get("dataset_params", {}).get("id_sampling", False)),
            seed=seed,
        )
        augmentation = ClipAugmentation.from_config(fomm_config.sections.get("dataset_params", {}).get("augmentation_params"))
        trainer = FommTrainer(fomm_config, params, device, options.perceptual_weights, options.precision, group, seed)
        if resumed:
            if state.get("perceptual", trainer.perceptual_name) != trainer.perceptual_name:
                raise ConfigError(
                    f"the run's perceptual loss uses {state['perceptual']}, not {trainer.perceptual_name}: "
                    "pass the same --perceptual-weights"
                )
            try:
                trainer.restore(resumed)
            except (KeyError, ValueError, TypeError, RuntimeError) as error:
                raise InputError(f"the run's checkpoint does not fit its config: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
        elif options.init_checkpoint:
            Checkpoint.read(options.init_checkpoint).load_into(trainer.networks)
        start_step = int(resumed.extra["step"]) if resumed else 0
        return _train_loop(trainer, frames, augmentation, run_dir, start_step, options, group, seed, bool(resumed))
    finally:
        group.stop()


def _train_loop(
    trainer: FommTrainer,
    frames: FramesDataset,
    augmentation: ClipAugmentation,
    run_dir: Path,
    start_step: int,
    options: TrainOptions,
    group: ProcessGroup,
    seed: int,
    resumed: bool,
) -> TrainResult:
    params = trainer.params
    steps_per_epoch = params.steps_per_epoch(len(frames))
    total_steps = options.steps if options.steps is not None else params.num_epochs * steps_per_epoch
    checkpoint_path = run_dir / CHECKPOINT_NAME
    if start_step >= total_steps:
        raise InputError(f"the run is already at step {start_step} of {total_steps}: ask for more --steps")
    main = group.is_main
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(run_dir)
        if not resumed:
            write_config(trainer.config, run_dir / CONFIG_NAME)
        what = f"resuming at step {start_step}" if resumed else "training"
        print(
            f"{what}: {total_steps} steps of batch {params.batch_size} ({steps_per_epoch} per epoch) on "
            f"{len(frames)} {'identities' if frames.id_sampling else 'videos'}, "
            f"device {trainer.device}, {group.world_size} process(es), "
            f"perceptual loss on {trainer.perceptual_name} features",
            file=sys.stderr,
        )
    pairs = TrainingPairs(frames, augmentation, seed)
    loader = DataLoader(
        pairs,
        batch_size=params.batch_size // group.world_size,
        sampler=SampleKeys(params.batch_size // group.world_size, start_step, group.rank, group.world_size),
        num_workers=options.workers,
        worker_init_fn=_ignore_interrupts,
        pin_memory=trainer.device.type == "cuda",
        persistent_workers=options.workers > 0,
    )
    monitor = RunMonitor(run_dir, start_step, options.tensorboard) if main else None
    bar = tqdm(total=total_steps, initial=start_step, desc="train", disable=not (main and options.progress), unit="step")
    step, losses = start_step, {}
    stopped = False

    def save(at_step: int) -> None:
        if main:
            trainer.checkpoint(at_step, at_step // steps_per_epoch, params.batch_size).save(checkpoint_path)

    try:
        with StopRequest(announce=main) as stop:
            batches = iter(loader)
            while step < total_steps:
                learning_rates = trainer.set_learning_rates(step // steps_per_epoch)
                batch = next(batches)
                loss_tensors, generated = trainer.train_step(batch["source"], batch["driving"], step)
                step += 1
                if step % options.log_every == 0 or step == total_steps:
                    losses = {name: float(value) for name, value in loss_tensors.items()}
                    bar.set_postfix({name: f"{value:.3g}" for name, value in losses.items()}, refresh=False)
                    if monitor:
                        monitor.scalars(step, {**losses, "lr_generator": learning_rates["generator"]})
                if monitor and (step % options.image_every == 0 or step == total_steps):
                    monitor.picture(step, batch_picture(batch["source"], batch["driving"], generated))
                bar.update(1)
                stopping = group.any(stop.requested, trainer.device)
                if stopping or step % options.checkpoint_every == 0 or step == total_steps:
                    save(step)
                if stopping:
                    stopped = step < total_steps
                    break
    finally:
        bar.close()
        if monitor:
            monitor.close()
    return TrainResult(step, total_steps, checkpoint_path, stopped, losses, stop.signum if stopped else None)
