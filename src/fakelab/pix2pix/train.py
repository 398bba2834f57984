"""Train pix2pix: a U-Net generator and a PatchGAN on paired images (Isola et al. 2017).

The objective and schedule are the reference's: vanilla GAN loss (BCE on the
PatchGAN's logits, the discriminator's loss halved) plus 100 x L1, Adam at 2e-4
with beta1 0.5, the learning rate constant for `n_epochs` and then decayed
linearly to zero over `n_epochs_decay`; batch 1.

A run lives in one folder:
- `options.json`: what it trains (resuming reads it back),
- `latest_net_G.pth`, `latest_net_D.pth`: plain state_dicts as the reference
  saves them, loadable by its test script; `epoch_<N>_net_G.pth` snapshots,
- `latest_state.pth`: both networks, both optimisers, the step: what `--resume`
  reads; written atomically, so a run killed at any moment resumes from its
  last checkpoint,
- `log.jsonl`, `tensorboard/` (losses per step, held-out L1/PSNR/SSIM per
  epoch), `web/index.html`: sample results of every epoch.

Every random choice (the order of the pairs, crops, flips, dropout) is seeded by
the run's seed and the step, so a resumed run continues exactly as an
uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fakelab.animation.api import resolve_device as animation_device
from fakelab.atomic import atomic_output
from fakelab.attacks.quality import psnr, ssim
from fakelab.errors import ConfigError, InputError
from fakelab.pix2pix.data import PairedImages, to_image
from fakelab.pix2pix.networks import GENERATORS, NORMS, NLayerDiscriminator, build_generator, init_weights
from fakelab.training.monitor import RunMonitor
from fakelab.training.trainer import StopRequest, _to_cpu, autocast_dtype
from fakelab.video import save_image

OPTIONS_NAME = "options.json"
STATE_NAME = "latest_state.pth"
GENERATOR_NAME = "latest_net_G.pth"
DISCRIMINATOR_NAME = "latest_net_D.pth"
WEB = "web"
# Tests set this to make each step slow enough for a kill to land mid-run.
STEP_DELAY_ENV = "FAKELAB_PIX2PIX_STEP_DELAY"


@dataclass(frozen=True)
class Pix2PixOptions:
    """The run's architecture and schedule: fixed when it starts, read back on resume."""

    generator: str = "unet_256"
    ngf: int = 64
    ndf: int = 64
    n_layers_d: int = 3
    norm: str = "batch"
    dropout: bool = True
    n_epochs: int = 100  # at the initial learning rate
    n_epochs_decay: int = 100  # then linearly down to zero
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    lambda_l1: float = 100.0
    load_size: int | None = None  # default: 286 for 256 px, scaled with the model size
    seed: int = 0

    @property
    def size(self) -> int:
        return 2 ** GENERATORS[self.generator]

    @property
    def epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay

    def lr_factor(self, epoch: int) -> float:
        """The reference's `linear` policy, for the 0-based epoch."""
        return 1.0 - max(0, epoch + 1 - self.n_epochs) / float(self.n_epochs_decay + 1)

    def check(self) -> None:
        if self.generator not in GENERATORS:
            raise ConfigError(f"unknown generator '{self.generator}': use one of {', '.join(GENERATORS)}")
        if self.norm not in NORMS:
            raise ConfigError(f"unknown norm '{self.norm}': use one of {', '.join(NORMS)}")
        if min(self.ngf, self.ndf, self.batch_size, self.n_layers_d) < 1:
            raise ConfigError("ngf, ndf, the batch size and the discriminator's layers must be at least 1")
        if self.n_epochs < 0 or self.n_epochs_decay < 0 or self.epochs < 1:
            raise ConfigError("train for at least one epoch (n_epochs + n_epochs_decay >= 1)")
        if not (self.lr > 0 and math.isfinite(self.lr)) or self.lambda_l1 < 0:
            raise ConfigError("the learning rate must be positive and the L1 weight non-negative")


@dataclass(frozen=True)
class RunOptions:
    """How this invocation runs; may change between resumes."""

    epochs: int | None = None  # stop after this epoch (default: all of them)
    checkpoint_every: int = 500  # steps; also at every epoch's end and when stopped
    save_epoch_freq: int = 5  # keep epoch_<N>_net_G.pth every N epochs
    save_epochs: tuple[int, ...] = ()  # and at these epochs
    log_every: int = 10
    samples: int = 4  # rows on the per-epoch HTML page
    eval_limit: int | None = 50  # held-out pairs to score per epoch (None: all)
    device: str = "auto"
    precision: str = "auto"
    progress: bool = True
    tensorboard: bool = True


@dataclass(frozen=True)
class TrainResult:
    step: int
    epoch: int
    run_dir: Path
    stopped_early: bool
    held_out: dict[str, float]
    signal: int | None = None  # the signal that stopped it early (SIGINT, SIGTERM, SIGHUP)


def resolve_device(name: str) -> torch.device:
    """`auto` picks the GPU when there is one; other names as `fakelab animate` takes them."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return animation_device(name)


def step_seed(seed: int, step: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, stream, step]).generate_state(1)[0])


def epoch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    return np.random.default_rng(np.random.SeedSequence([seed, 1, epoch])).permutation(count)


class Pix2PixModel:
    """The generator, the discriminator, their optimisers, and one training step."""

    def __init__(self, options: Pix2PixOptions, device: torch.device, precision: str = "auto"):
        self.options, self.device = options, device
        init = torch.Generator().manual_seed(options.seed)
        self.generator = build_generator(options.generator, options.ngf, options.norm, use_dropout=options.dropout)
        self.discriminator = NLayerDiscriminator(6, options.ndf, options.n_layers_d, options.norm)
        for net in (self.generator, self.discriminator):
            init_weights(net, generator=init)
            net.to(device).train()
        betas = (options.beta1, 0.999)
        self.optimizer_g = torch.optim.Adam(self.generator.parameters(), lr=options.lr, betas=betas)
        self.optimizer_d = torch.optim.Adam(self.discriminator.parameters(), lr=options.lr, betas=betas)
        self.amp_dtype = autocast_dtype(precision, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)

    def set_learning_rate(self, epoch: int) -> float:
        lr = self.options.lr * self.options.lr_factor(epoch)
        for optimizer in (self.optimizer_g, self.optimizer_d):
            for group in optimizer.param_groups:
                group["lr"] = lr
        return lr

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def train_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The reference's optimize_parameters: D on real and (detached) fake pairs, then G."""
        real_a, real_b = real_a.to(self.device), real_b.to(self.device)
        with self._autocast():
            fake_b = self.generator(real_a)
        self.discriminator.requires_grad_(True)
        self.optimizer_d.zero_grad(set_to_none=True)
        with self._autocast():
            pred_fake = self.discriminator(torch.cat([real_a, fake_b.detach()], 1)).float()
            pred_real = self.discriminator(torch.cat([real_a, real_b], 1)).float()
            loss_d_fake = F.binary_cross_entropy_with_logits(pred_fake, torch.zeros_like(pred_fake))
            loss_d_real = F.binary_cross_entropy_with_logits(pred_real, torch.ones_like(pred_real))
            loss_d = (loss_d_fake + loss_d_real) * 0.5
        self.scaler.scale(loss_d).backward()
        self.scaler.step(self.optimizer_d)
        self.discriminator.requires_grad_(False)
        self.optimizer_g.zero_grad(set_to_none=True)
        with self._autocast():
            pred_fake = self.discriminator(torch.cat([real_a, fake_b], 1)).float()
            loss_g_gan = F.binary_cross_entropy_with_logits(pred_fake, torch.ones_like(pred_fake))
            loss_g_l1 = F.l1_loss(fake_b.float(), real_b) * self.options.lambda_l1
            loss_g = loss_g_gan + loss_g_l1
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.optimizer_g)
        self.scaler.update()
        losses = {"G_GAN": loss_g_gan, "G_L1": loss_g_l1, "D_real": loss_d_real, "D_fake": loss_d_fake}
        return {name: value.detach() for name, value in losses.items()}, fake_b.detach()

    @torch.no_grad()
    def translate(self, real_a: torch.Tensor) -> torch.Tensor:
        """G(A) in eval mode (running statistics, no dropout); the training mode is restored after."""
        self.generator.eval()
        try:
            return self.generator(real_a.to(self.device)).float()
        finally:
            self.generator.train()

    def state(self, step: int) -> dict:
        return {
            "format": "fakelab-pix2pix-state/1",
            "step": step,
            "net_G": _to_cpu(self.generator.state_dict()),
            "net_D": _to_cpu(self.discriminator.state_dict()),
            "optimizer_G": _to_cpu(self.optimizer_g.state_dict()),
            "optimizer_D": _to_cpu(self.optimizer_d.state_dict()),
            "grad_scaler": self.scaler.state_dict(),
        }

    def restore(self, state: dict) -> None:
        self.generator.load_state_dict(state["net_G"])
        self.discriminator.load_state_dict(state["net_D"])
        self.optimizer_g.load_state_dict(state["optimizer_G"])
        self.optimizer_d.load_state_dict(state["optimizer_D"])
        if self.scaler.is_enabled() and state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])


def save_state_dict(state: dict, path: Path) -> None:
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def held_out_scores(model: Pix2PixModel, pairs: PairedImages, limit: int | None = None) -> dict[str, float]:
    """Mean L1 (on [0, 1] pixels), PSNR and SSIM of G(A) against B over the held-out pairs, eval mode."""
    count = len(pairs) if limit is None else min(limit, len(pairs))
    scores = {"L1": [], "PSNR": [], "SSIM": []}
    for index in range(count):
        real_a, real_b = pairs.sample(index)
        fake = to_image(model.translate(real_a[None])[0])
        real = to_image(real_b)
        scores["L1"].append(float(np.abs(fake.astype(np.float64) - real.astype(np.float64)).mean() / 255))
        scores["PSNR"].append(psnr(real, fake))
        scores["SSIM"].append(ssim(real, fake))
    return {name: float(np.mean(values)) for name, values in scores.items()} if count else {}


def read_options(run_dir: Path) -> Pix2PixOptions:
    path = run_dir / OPTIONS_NAME
    try:
        raw = json.loads(path.read_text())
        return Pix2PixOptions(**raw)
    except (OSError, ValueError, TypeError) as error:
        raise InputError(f"{path} is not a readable pix2pix run description ({error})") from None


def read_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        raise InputError(f"{path} is not a readable pix2pix training state ({error})") from None
    if not isinstance(state, dict) or state.get("format") != "fakelab-pix2pix-state/1":
        raise InputError(f"{path} is not a pix2pix training state written by fakelab")
    return state


def _prepare_run(run_dir: Path, options: Pix2PixOptions, resume: bool) -> tuple[Pix2PixOptions, dict | None]:
    if resume:
        if not (run_dir / STATE_NAME).is_file():
            raise InputError(f"nothing to resume: {run_dir} has no {STATE_NAME}")
        return read_options(run_dir), read_state(run_dir / STATE_NAME)
    if (run_dir / STATE_NAME).exists() or (run_dir / OPTIONS_NAME).exists():
        raise InputError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another output folder")
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"{run_dir} is a file, not a folder for the run")
    options.check()
    return options, None


def train(
    data: str | os.PathLike,
    run_dir: str | os.PathLike,
    options: Pix2PixOptions = Pix2PixOptions(),
    run: RunOptions = RunOptions(),
    resume: bool = False,
) -> TrainResult:
    """Train (or with `resume`, continue) pix2pix on the paired images in `data`, into `run_dir`."""
    run_dir = Path(run_dir)
    options, state = _prepare_run(run_dir, options, resume)
    device = resolve_device(run.device)
    train_pairs = PairedImages(data, "train", options.size, options.load_size)
    if not len(train_pairs):
        raise InputError(f"{data} has no training pairs")
    test_pairs = PairedImages(data, "test", options.size)
    if not len(test_pairs):
        test_pairs = PairedImages(data, "val", options.size)
    last_epoch = options.epochs if run.epochs is None else min(run.epochs, options.epochs)
    steps_per_epoch = math.ceil(len(train_pairs) / options.batch_size)
    start_step = int(state["step"]) if state else 0
    if start_step >= last_epoch * steps_per_epoch:
        raise InputError(f"the run has already trained {start_step // steps_per_epoch} epochs: ask for more with --epochs")
    model = Pix2PixModel(options, device, run.precision)
    if state:
        model.restore(state)
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.glob(".*.partial*"):
        stale.unlink(missing_ok=True)
    if not resume:
        with atomic_output(run_dir / OPTIONS_NAME) as tmp:
            tmp.write_text(json.dumps(dataclasses.asdict(options), indent=1))
    print(
        f"{'resuming at step ' + str(start_step) if resume else 'training'}: {options.generator} (ngf {options.ngf}, "
        f"{options.norm} norm) on {len(train_pairs)} pairs, {steps_per_epoch} steps per epoch, "
        f"epochs {start_step // steps_per_epoch + 1}-{last_epoch} of {options.epochs}, device {device}",
        file=sys.stderr,
    )
    return _loop(model, train_pairs, test_pairs, run_dir, start_step, last_epoch * steps_per_epoch, steps_per_epoch, run)


def _loop(model, train_pairs, test_pairs, run_dir, start_step, end_step, steps_per_epoch, run) -> TrainResult:
    options = model.options
    delay = float(os.environ.get(STEP_DELAY_ENV, 0) or 0)
    monitor = RunMonitor(run_dir, start_step, run.tensorboard)
    web = EpochPage(run_dir / WEB, test_pairs if len(test_pairs) else train_pairs, run.samples)
    bar = tqdm(total=end_step, initial=start_step, desc="pix2pix", unit="step", disable=not run.progress)
    step, held_out, stopped = start_step, {}, False

    def save(at_step: int) -> None:
        state = model.state(at_step)
        save_state_dict(state, run_dir / STATE_NAME)
        # The reference layout, for its users and ours; resuming reads only the state above.
        save_state_dict(state["net_G"], run_dir / GENERATOR_NAME)
        save_state_dict(state["net_D"], run_dir / DISCRIMINATOR_NAME)

    try:
        with StopRequest(announce=run.progress) as stop:
            while step < end_step:
                epoch, position = divmod(step, steps_per_epoch)
                lr = model.set_learning_rate(epoch)
                order = epoch_order(options.seed, epoch, len(train_pairs))
                indices = order[position * options.batch_size : (position + 1) * options.batch_size]
                real_a, real_b = train_pairs.batch(indices, np.random.default_rng(step_seed(options.seed, step, 2)))
                torch.manual_seed(step_seed(options.seed, step, 3))  # dropout
                losses, _ = model.train_step(real_a, real_b)
                step += 1
                if delay:
                    time.sleep(delay)
                if step % run.log_every == 0 or step == end_step:
                    values = {name: float(value) for name, value in losses.items()}
                    bar.set_postfix({name: f"{value:.3g}" for name, value in values.items()}, refresh=False)
                    monitor.scalars(step, {**values, "lr": lr})
                bar.update(1)
                epoch_done = step % steps_per_epoch == 0
                if epoch_done:
                    finished = step // steps_per_epoch
                    if len(test_pairs):
                        held_out = held_out_scores(model, test_pairs, run.eval_limit)
                        monitor.scalars(step, {f"test_{name}": value for name, value in held_out.items()} | {"epoch": finished})
                    web.add_epoch(finished, model)
                    if (run.save_epoch_freq and finished % run.save_epoch_freq == 0) or finished in run.save_epochs:
                        save_state_dict(_to_cpu(model.generator.state_dict()), run_dir / f"epoch_{finished}_net_G.pth")
                if stop.requested or epoch_done or step % run.checkpoint_every == 0 or step == end_step:
                    save(step)
                if stop.requested:
                    stopped = step < end_step
                    break
    finally:
        bar.close()
        monitor.close()
    return TrainResult(step, step // steps_per_epoch, run_dir, stopped, held_out, stop.signum if stopped else None)


class EpochPage:
    """`web/index.html`: real A, fake B, real B of a few fixed pairs after every epoch, newest first."""

    def __init__(self, folder: Path, pairs: PairedImages, rows: int):
        self.folder, self.pairs, self.rows = folder, pairs, min(rows, len(pairs))

    def add_epoch(self, epoch: int, model: Pix2PixModel) -> None:
        if not self.rows:
            return
        images = self.folder / "images"
        for index in range(self.rows):
            real_a, real_b = self.pairs.sample(index)
            fake_b = model.translate(real_a[None])[0]
            for label, tensor in (("real_A", real_a), ("fake_B", fake_b), ("real_B", real_b)):
                save_image(images / f"epoch{epoch:03d}_{index}_{label}.png", to_image(tensor))
        self._write_index(epoch)

    def _write_index(self, last_epoch: int) -> None:
        parts = ["<!doctype html><meta charset=utf-8><title>pix2pix samples</title><body>"]
        for epoch in range(last_epoch, 0, -1):
            if not (self.folder / "images" / f"epoch{epoch:03d}_0_real_A.png").exists():
                continue
            parts.append(f"<h3>epoch {epoch}</h3><table><tr><th>real_A</th><th>fake_B</th><th>real_B</th></tr>")
            for index in range(self.rows):
                name = html.escape(self.pairs.pairs[index].name)
                cells = "".join(
                    f'<td><img src="images/epoch{epoch:03d}_{index}_{label}.png" title="{name}"></td>'
                    for label in ("real_A", "fake_B", "real_B")
                )
                parts.append(f"<tr>{cells}</tr>")
            parts.append("</table>")
        with atomic_output(self.folder / "index.html") as tmp:
            tmp.write_text("\n".join(parts))
