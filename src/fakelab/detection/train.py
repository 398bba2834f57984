"""Train a deepfake detector on face crops of real and fake videos or images.

Faces are taken from the inputs once, with the same tracking and FaceForensics++ crop
as `fakelab detect`, so the detector trains on what it will be shown. Each epoch draws
as many fake items as real ones (the smaller class is repeated), augments them
(`augment.py`), and, with `pseudo_fakes="self-blend"`, turns every real face into a
self-blended pseudo-fake as well (`self_blend.py`), so that no fake data is needed.
Validation holds out whole videos (or folders of frames), and reports the frame-level
AUC after each epoch; training stops when it has not improved for `patience` epochs.

After each epoch the training state (weights, optimiser, history) is written atomically
beside the output, `<output>.state.pt`, and the best detector so far to the output;
`resume=True` continues from the state. Epoch randomness is seeded by (seed, epoch), so
a resumed run draws the same batches as an uninterrupted one.

`triplet=True` adds the siamese stage of Bonettini et al.: a triplet margin loss on the
L2-normalised embeddings (hardest positive and negative in each batch), trained jointly
with the classification loss.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fakelab.atomic import atomic_output
from fakelab.attacks.evaluation import attack_face_crops
from fakelab.attacks.training import ADVERSARIAL_METHODS, TRAINING_EPS, adversarial_batch, training_pgd
from fakelab.detection.augment import AugmentationConfig, FaceAugmentation
from fakelab.detection.checkpoint import load_detector, pretrained_lite0_detector, save_detector
from fakelab.detection.metrics import roc_auc
from fakelab.detection.pipeline import image_faces, is_image, media_files, score_frames, video_faces
from fakelab.detection.registry import ARCHITECTURES, build_detector
from fakelab.detection.self_blend import SelfBlendConfig, self_blend
from fakelab.detection.spec import DeepfakeDetector
from fakelab.errors import ConfigError, FakelabError, InputError, NoFaceError
from fakelab.faces.crop import crop_frame
from fakelab.video import load_image

PathLike = str | os.PathLike
STATE_FORMAT = "fakelab-detector-training/1"
PSEUDO_FAKES = ("self-blend",)
REAL, FAKE = 0, 1


@dataclass(frozen=True)
class TrainingConfig:
    arch: str = "efficientnet-lite0"
    epochs: int = 10
    batch_size: int = 16
    learning_rate: float = 2e-4
    weight_decay: float = 1e-4
    frames_per_video: int = 16
    val_fraction: float = 0.2
    patience: int = 3
    pseudo_fakes: str | None = None
    triplet: bool = False
    triplet_margin: float = 0.2
    triplet_weight: float = 1.0
    augment: bool = True
    augmentation: AugmentationConfig = AugmentationConfig()
    self_blend: SelfBlendConfig = SelfBlendConfig()
    # "pgd": half of each batch replaced by PGD examples (fakelab.attacks.training).
    adversarial: str | None = None
    adversarial_eps: float = TRAINING_EPS
    seed: int = 0
    face_detector: str | None = None
    device: str = "cpu"

    def check(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown detector architecture {self.arch!r}; known: {', '.join(ARCHITECTURES)}")
        if self.pseudo_fakes not in (None, *PSEUDO_FAKES):
            raise ConfigError(f"unknown pseudo-fake method {self.pseudo_fakes!r}; known: {', '.join(PSEUDO_FAKES)}")
        if self.adversarial not in (None, *ADVERSARIAL_METHODS):
            raise ConfigError(f"unknown adversarial training {self.adversarial!r}; known: {', '.join(ADVERSARIAL_METHODS)}")
        if self.epochs < 1 or self.batch_size < 2 or self.frames_per_video < 1 or self.patience < 1:
            raise ConfigError("epochs, frames per video and patience must be at least 1, the batch size at least 2")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"the validation fraction must be between 0 and 1, got {self.val_fraction}")


@dataclass
class FaceSample:
    """One face crop to learn from; `group` (its video, or its folder of frames) is the unit
    that the train/validation split keeps together."""

    image: np.ndarray
    landmarks: np.ndarray | None  # (68, 2) in crop pixels, None for a face image with no face found
    label: int
    group: str


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    val_auc: float
    val_accuracy: float
    seconds: float
    # Adversarial training only: the validation AUC with every face attacked by the training
    # inner loop, which picks the best epoch there.
    val_attacked_auc: float | None = None

    @property
    def selection_auc(self) -> float:
        return self.val_auc if self.val_attacked_auc is None else self.val_attacked_auc

    def summary(self, epochs: int, best: bool) -> str:
        mark = " (best)" if best else ""
        attacked = "" if self.val_attacked_auc is None else f", under attack {self.val_attacked_auc:.4f}"
        return (
            f"epoch {self.epoch}/{epochs}: train loss {self.train_loss:.4f}, validation AUC "
            f"{self.val_auc:.4f}{attacked}{mark}, accuracy {self.val_accuracy:.3f} ({self.seconds:.0f} s)"
        )


@dataclass
class TrainingResult:
    checkpoint: Path
    state: Path
    history: list[EpochRecord]
    best_epoch: int
    best_auc: float
    stopped_early: bool
    train_faces: dict[str, int] = field(default_factory=dict)
    val_faces: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        judge = "validation AUC" + (" under attack" if self.history and self.history[-1].val_attacked_auc is not None else "")
        why = f"stopped early: no better {judge}" if self.stopped_early else "done"
        return (
            f"{why} after {len(self.history)} epochs; best {judge} {self.best_auc:.4f} at epoch "
            f"{self.best_epoch}, saved to {self.checkpoint}"
        )


def state_path(output: PathLike) -> Path:
    """Where the resumable training state of a detector written to `output` lives."""
    output = Path(output)
    return output.with_name(output.name + ".state.pt")


# ---- data ---------------------------------------------------------------------------


def _group_of(path: Path, root: Path) -> str:
    """A video is its own group; images are grouped by their folder (a video's frames),
    or stand alone when they sit directly in the root."""
    if is_image(path) and path.parent != root:
        return str(path.parent.relative_to(root))
    return str(path.relative_to(root))


def _face_image(path: Path, size: int, face_detector: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """A face image's crop: found and cropped like video frames, or taken whole (centre
    square, resized) when it is already so tight a crop that no face is detected in it."""
    try:
        faces = image_faces(path, size, face_detector)
        return faces.crops[0], faces.landmarks[0]
    except NoFaceError:
        image = load_image(path)
        side = min(image.shape[:2])
        top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        return crop_frame(image, [left, top, left + side, top + side], size), None


def collect_faces(
    folder: PathLike,
    label: int,
    size: int,
    frames_per_video: int,
    face_detector: str | None = None,
    on_skip: Callable[[Path, str], None] | None = None,
) -> list[FaceSample]:
    """Face crops of every video (`frames_per_video` sampled frames) and image under `folder`.

    A file that cannot be read, or a video without a face, is skipped (and reported to
    `on_skip`) so one bad file does not stop the collection.
    """
    root = Path(folder)
    samples: list[FaceSample] = []
    for path in media_files(root, recursive=True):
        group = _group_of(path, root)
        try:
            if is_image(path):
                image, landmarks = _face_image(path, size, face_detector)
                samples.append(FaceSample(image, landmarks, label, group))
                continue
            faces = video_faces(path, size, frames_per_video, face_detector)
        except FakelabError as error:
            if on_skip:
                on_skip(path, str(error))
            continue
        samples += [FaceSample(crop, marks, label, group) for crop, marks in zip(faces.crops, faces.landmarks)]
    return samples


def split_by_group(samples: Sequence[FaceSample], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, validation indices): a `val_fraction` of each class's groups, drawn
    at random, is held out whole."""
    rng = np.random.default_rng([seed, 7])
    val_groups: set[tuple[int, str]] = set()
    for label in (REAL, FAKE):
        groups = sorted({s.group for s in samples if s.label == label})
        if not groups:
            continue
        if len(groups) < 2:
            raise InputError(
                f"the {'real' if label == REAL else 'fake'} faces come from one video or folder only: "
                "validation needs at least two, to hold one out"
            )
        held = max(1, round(val_fraction * len(groups)))
        held = min(held, len(groups) - 1)
        val_groups |= {(label, g) for g in rng.permutation(groups)[:held]}
    train, val = [], []
    for index, sample in enumerate(samples):
        (val if (sample.label, sample.group) in val_groups else train).append(index)
    return train, val


@dataclass(frozen=True)
class Item:
    """One training example: a sample, taken as it is or turned into a self-blended fake."""

    sample: int
    self_blended: bool = False


def class_items(samples: Sequence[FaceSample], indices: Sequence[int], pseudo_fakes: bool) -> tuple[list[Item], list[Item]]:
    reals = [Item(i) for i in indices if samples[i].label == REAL]
    fakes = [Item(i) for i in indices if samples[i].label == FAKE]
    if pseudo_fakes:
        fakes += [Item(item.sample, self_blended=True) for item in reals]
    return reals, fakes


def balanced_epoch(reals: Sequence[Item], fakes: Sequence[Item], rng: np.random.Generator) -> list[Item]:
    """As many fakes as reals, the smaller class repeated in shuffled rounds, all shuffled."""
    count = max(len(reals), len(fakes))

    def drawn(items: Sequence[Item]) -> list[Item]:
        rounds = math.ceil(count / len(items))
        order = np.concatenate([rng.permutation(len(items)) for _ in range(rounds)])[:count]
        return [items[i] for i in order]

    epoch = drawn(reals) + drawn(fakes)
    return [epoch[i] for i in rng.permutation(len(epoch))]


def item_image(
    samples: Sequence[FaceSample], item: Item, rng: np.random.Generator, blend: SelfBlendConfig = SelfBlendConfig()
) -> np.ndarray:
    sample = samples[item.sample]
    if item.self_blended:
        return self_blend(sample.image, sample.landmarks, rng, blend)[0]
    return sample.image


def item_label(samples: Sequence[FaceSample], item: Item) -> int:
    return FAKE if item.self_blended else samples[item.sample].label


# ---- model and losses ---------------------------------------------------------------


def initial_detector(arch: str, init: PathLike | None = None) -> DeepfakeDetector:
    """Weights to start from: a checkpoint, else ImageNet for Lite0, else random."""
    if init is not None:
        return load_detector(init, arch)
    if arch == "efficientnet-lite0":
        return pretrained_lite0_detector()
    return build_detector(arch)


def batch_hard_triplet_loss(embedding: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over anchors of max(0, d(hardest positive) - d(hardest negative) + margin) on
    L2-normalised embeddings; anchors without a positive and a negative in the batch are
    left out."""
    unit = F.normalize(embedding, dim=1)
    distance = torch.cdist(unit, unit)
    same = labels[:, None] == labels[None, :]
    itself = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positives = same & ~itself
    usable = positives.any(1) & (~same).any(1)
    if not usable.any():
        return embedding.new_zeros(())
    hardest_positive = distance.masked_fill(~positives, float("-inf")).amax(1)
    hardest_negative = distance.masked_fill(same, float("inf")).amin(1)
    return F.relu(hardest_positive - hardest_negative + margin)[usable].mean()


def batch_loss(detector: DeepfakeDetector, images: torch.Tensor, labels: torch.Tensor, config: TrainingConfig) -> torch.Tensor:
    if not config.triplet:
        return F.binary_cross_entropy_with_logits(detector.fake_logit(images), labels.float())
    embedding = detector.embed(images)
    classification = F.binary_cross_entropy_with_logits(detector.classify(embedding), labels.float())
    return classification + config.triplet_weight * batch_hard_triplet_loss(embedding, labels, config.triplet_margin)


# ---- the loop -----------------------------------------------------------------------


@dataclass
class _Validation:
    images: list[np.ndarray]
    labels: np.ndarray


def _validation_set(samples: Sequence[FaceSample], indices: Sequence[int], config: TrainingConfig) -> _Validation:
    """The held-out faces and, with pseudo-fakes, one fixed self-blend of each real one."""
    reals, fakes = class_items(samples, indices, config.pseudo_fakes is not None)
    rng = np.random.default_rng([config.seed, 11])
    items = reals + fakes
    images = [item_image(samples, item, rng, config.self_blend) for item in items]
    labels = np.array([item_label(samples, item) for item in items])
    if len(set(labels.tolist())) < 2:
        raise InputError("the validation faces are all of one class; give fakes, or --pseudo-fakes self-blend")
    return _Validation(images, labels)


def _train_epoch(
    detector: DeepfakeDetector,
    optimizer: torch.optim.Optimizer,
    samples: Sequence[FaceSample],
    items: Sequence[Item],
    config: TrainingConfig,
    rng: np.random.Generator,
    augmentation: FaceAugmentation | None,
    progress: bool,
    description: str,
) -> float:
    device = torch.device(config.device)
    detector.train()
    losses = []
    batches = range(0, len(items) - 1, config.batch_size)  # a last batch of one cannot train BatchNorm
    for start in tqdm(batches, desc=description, unit="batch", disable=not progress, leave=False):
        chunk = items[start : start + config.batch_size]
        images = [item_image(samples, item, rng, config.self_blend) for item in chunk]
        if augmentation:
            images = [augmentation(image, rng) for image in images]
        labels = torch.tensor([item_label(samples, item) for item in chunk], device=device)
        batch = detector.input_spec.prepare(images).to(device)
        if config.adversarial:
            batch = adversarial_batch(detector, batch, labels, training_pgd(config.adversarial_eps))
        loss = batch_loss(detector, batch, labels, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def _validate(detector: DeepfakeDetector, validation: _Validation, config: TrainingConfig) -> tuple[float, float, float | None]:
    """Validation AUC and accuracy; for adversarial training also the AUC with every face
    attacked by the training inner loop (robust overfitting, Rice et al. 2020, makes the
    clean AUC a poor judge of which epoch resists attacks best)."""
    logits = score_frames(detector, validation.images, config.batch_size)
    accuracy = float(np.mean((logits >= 0) == (validation.labels == FAKE)))
    attacked_auc = None
    if config.adversarial:
        attacked = attack_face_crops(
            detector, validation.images, validation.labels, config.adversarial,
            training_pgd(config.adversarial_eps), config.batch_size,
        )
        attacked_auc = roc_auc(validation.labels, score_frames(detector, attacked.crops, config.batch_size))
    return roc_auc(validation.labels, logits), accuracy, attacked_auc


def _save_state(path: Path, detector, optimizer, config, epoch, best_auc, best_epoch, stale, history) -> None:
    state = {
        "format": STATE_FORMAT,
        "config": asdict(config),
        "epoch": epoch,
        "best_auc": best_auc,
        "best_epoch": best_epoch,
        "stale_epochs": stale,
        "history": [asdict(record) for record in history],
        "model": detector.state_dict(),
        "optimizer": optimizer.state_dict(),
    }
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path, config: TrainingConfig) -> dict:
    from fakelab.safe_load import check_tensors, check_whole_number, load_torch_data

    state = load_torch_data(path, "training state")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise InputError(f"{path} is not a fakelab detector training state")
    missing = [key for key in ("config", "epoch", "best_auc", "best_epoch", "stale_epochs", "history", "model", "optimizer")
               if key not in state]
    if missing or not isinstance(state["config"], dict) or not isinstance(state["optimizer"], dict):
        raise InputError(f"the training state {path} is incomplete (no {missing[0] if missing else 'config'!r}): delete it to start over")
    check_tensors(state["model"], f"{path.name}: model")
    for key in ("epoch", "best_epoch", "stale_epochs"):
        check_whole_number(state[key], f"{path.name}: {key}")
    if state["config"].get("arch") != config.arch:
        raise ConfigError(f"{path} trains {state['config']['arch']}, not {config.arch}")
    return state


def train_detector(
    real: PathLike | None,
    fake: PathLike | None,
    output: PathLike,
    config: TrainingConfig = TrainingConfig(),
    resume: bool = False,
    init: PathLike | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> TrainingResult:
    """Train a detector on the faces under `real` and `fake` (folders of videos or face
    images; `fake` may be None with `config.pseudo_fakes="self-blend"`) and write the best
    one (by validation AUC) to `output` (.pt or .safetensors, loadable by `load_detector`).
    """
    config.check()
    if real is None:
        raise InputError("training needs real faces: give a folder of real videos or images")
    if fake is None and config.pseudo_fakes is None:
        raise InputError("training needs fakes: give a folder of fake videos or images, or --pseudo-fakes self-blend")
    output, state_file = Path(output), state_path(output)
    if state_file.exists() and not resume:
        raise InputError(f"a training state already exists at {state_file}: resume it, or delete it to start over")
    if resume and not state_file.exists():
        raise InputError(f"nothing to resume: {state_file} does not exist")
    state = _load_state(state_file, config) if resume else None

    torch.manual_seed(config.seed)  # the new classifier head starts the same in every run
    detector = initial_detector(config.arch, init).to(config.device)
    size = detector.input_spec.size
    skipped = lambda path, why: log(f"skipped {path}: {why}")  # noqa: E731
    samples = collect_faces(real, REAL, size, config.frames_per_video, config.face_detector, skipped)
    if fake is not None:
        samples += collect_faces(fake, FAKE, size, config.frames_per_video, config.face_detector, skipped)
    train_indices, val_indices = split_by_group(samples, config.val_fraction, config.seed)
    reals, fakes = class_items(samples, train_indices, config.pseudo_fakes is not None)
    if not reals or not fakes:
        raise InputError("no faces were found to train on in one of the classes")
    validation = _validation_set(samples, val_indices, config)
    augmentation = FaceAugmentation(config.augmentation) if config.augment else None
    optimizer = torch.optim.AdamW(detector.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)

    history: list[EpochRecord] = []
    best_auc, best_epoch, stale, start_epoch = -1.0, 0, 0, 1
    if state is not None:
        detector.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = [EpochRecord(**record) for record in state["history"]]
        best_auc, best_epoch, stale = state["best_auc"], state["best_epoch"], state["stale_epochs"]
        start_epoch = state["epoch"] + 1
        log(f"resuming after epoch {state['epoch']} (best validation AUC {best_auc:.4f} at epoch {best_epoch})")
    log(
        f"training {config.arch} on {len(reals)} real and {len(fakes)} fake faces"
        f"{' (self-blended pseudo-fakes included)' if config.pseudo_fakes else ''}; "
        f"validating on {len(validation.labels)} faces of held-out videos"
    )

    for epoch in range(start_epoch, config.epochs + 1):
        if stale >= config.patience:
            break
        started = time.perf_counter()
        rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed * 100_003 + epoch)
        items = balanced_epoch(reals, fakes, rng)
        loss = _train_epoch(
            detector, optimizer, samples, items, config, rng, augmentation, progress, f"epoch {epoch}"
        )
        auc, accuracy, attacked_auc = _validate(detector, validation, config)
        record = EpochRecord(epoch, loss, auc, accuracy, time.perf_counter() - started, attacked_auc)
        history.append(record)
        improved = record.selection_auc > best_auc
        if improved:
            best_auc, best_epoch, stale = record.selection_auc, epoch, 0
            save_detector(detector, output)
        else:
            stale += 1
        _save_state(state_file, detector, optimizer, config, epoch, best_auc, best_epoch, stale, history)
        log(record.summary(config.epochs, improved))

    return TrainingResult(
        checkpoint=output,
        state=state_file,
        history=history,
        best_epoch=best_epoch,
        best_auc=best_auc,
        stopped_early=stale >= config.patience and len(history) < config.epochs,
        train_faces={"real": len(reals), "fake": len(fakes)},
        val_faces={"real": int((validation.labels == REAL).sum()), "fake": int((validation.labels == FAKE).sum())},
    )
