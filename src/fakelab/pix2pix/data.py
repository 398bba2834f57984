"""Paired images for pix2pix, in the reference's two layouts.

- aligned: `DIR/<split>/NAME.png`, each image A and B side by side (A left);
- folders: `DIR/A/NAME.png` and `DIR/B/NAME.png` with matching names, or
  `DIR/A/<split>/` and `DIR/B/<split>/` (plain `A/`, `B/` count as the train split).

Training samples are augmented as the reference does: A and B resized to
`load_size` (286 for 256 px models, scaled with the model size), one random
`size` crop and one random horizontal flip shared by both; evaluation samples
are resized straight to `size`. Tensors are CHW float32 in [-1, 1].
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fakelab.errors import InputError
from fakelab.video import load_image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "val", "test")


def default_load_size(size: int) -> int:
    """The reference loads 286 px for 256 px crops; smaller models scale it."""
    return round(size * 286 / 256)


def _images(folder: Path) -> dict[str, Path]:
    return {path.name: path for path in sorted(folder.iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()}


@dataclass(frozen=True)
class Pair:
    name: str
    a: Path
    b: Path | None  # None: aligned, `a` holds A|B side by side


def find_pairs(root: str | os.PathLike, split: str = "train") -> list[Pair]:
    """The pairs of one split, sorted by name; raises InputError when there are none."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder of paired images")
    if (root / split).is_dir():
        return [Pair(name, path, None) for name, path in _images(root / split).items()]
    if (root / "A").is_dir() and (root / "B").is_dir():
        folders = [root / "A" / split, root / "B" / split]
        if not all(folder.is_dir() for folder in folders):
            if split != "train":
                return []
            folders = [root / "A", root / "B"]
        a_images, b_images = _images(folders[0]), _images(folders[1])
        unmatched = sorted(set(a_images) ^ set(b_images))
        if unmatched:
            raise InputError(f"{folders[0]} and {folders[1]} must hold the same names; {unmatched[0]} is in only one")
        return [Pair(name, a_images[name], b_images[name]) for name in a_images]
    if split == "train":
        raise InputError(f"{root} has neither a train/ folder of A|B images nor A/ and B/ folders")
    return []


def split_aligned(image: np.ndarray, where: object) -> tuple[np.ndarray, np.ndarray]:
    width = image.shape[1]
    if width < 2 or width % 2:
        raise InputError(f"{where} is not an A|B pair side by side (its width {width} is odd)")
    return image[:, : width // 2], image[:, width // 2 :]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 to CHW float32 in [-1, 1] (ToTensor then Normalize(0.5, 0.5))."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div(255.0).sub(0.5).div(0.5)


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """CHW in [-1, 1] to HxWx3 uint8."""
    array = ((tensor.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte()
    return array.permute(1, 2, 0).numpy()


def resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))


class PairedImages:
    """One split of a paired-image folder."""

    def __init__(self, root: str | os.PathLike, split: str = "train", size: int = 256, load_size: int | None = None):
        self.root, self.split, self.size = Path(root), split, size
        self.load_size = load_size or default_load_size(size)
        if self.load_size < size:
            raise InputError(f"the load size {self.load_size} is smaller than the crop size {size}")
        self.pairs = find_pairs(root, split)

    def __len__(self) -> int:
        return len(self.pairs)

    def images(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair `index` as two uint8 images, as stored."""
        pair = self.pairs[index]
        if pair.b is None:
            return split_aligned(load_image(pair.a), pair.a)
        return load_image(pair.a), load_image(pair.b)

    def sample(self, index: int, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pair `index` as tensors: augmented with `rng`, else resized to `size`."""
        a, b = self.images(index)
        if rng is None:
            return to_tensor(resize(a, self.size)), to_tensor(resize(b, self.size))
        left, top = (int(rng.integers(0, self.load_size - self.size + 1)) for _ in range(2))
        flip = bool(rng.random() > 0.5)
        out = []
        for image in (a, b):
            image = resize(image, self.load_size)[top : top + self.size, left : left + self.size]
            out.append(to_tensor(image[:, ::-1] if flip else image))
        return out[0], out[1]

    def batch(self, indices, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        samples = [self.sample(int(index), rng) for index in indices]
        return torch.stack([a for a, _ in samples]), torch.stack([b for _, b in samples])
