"""Run a trained pix2pix generator on images, folders of images and videos.

The generator comes from a `latest_net_G.pth`-style file: a plain state_dict as
the reference (and `fakelab pix2pix train`) saves it, whose shapes say which
U-Net it is (unet_256 or unet_128, its width, batch or instance norm); a
`latest_state.pth` training state works too. It runs in eval mode: BatchNorm on
its running statistics, no dropout, so the same input always gives the same
output (the reference's test script, without `--eval`, keeps dropout on).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from fakelab.errors import CheckpointError, InputError
from fakelab.pix2pix.data import IMAGE_SUFFIXES, resize, split_aligned, to_image, to_tensor
from fakelab.pix2pix.networks import GeneratorSpec, UnetGenerator, generator_spec, load_state
from fakelab.video import VideoWriter, has_audio, iter_frames, load_image, probe_video, save_image

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif"}


def read_generator_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A generator state_dict from a reference-style .pth (or a fakelab training state)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is not a readable generator checkpoint (no such file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types (with multi-line texts) for bad files; all mean "not a checkpoint"
        raise CheckpointError(
            f"{path} is not a readable generator checkpoint (not a file torch.save wrote, or a damaged one)"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("net_G"), dict):
        state = state["net_G"]
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise CheckpointError(f"{path} is not a generator state_dict")
    # Saved from a DataParallel wrapper: drop its prefix.
    return {key.removeprefix("module."): value for key, value in state.items()}


class Translator:
    """A generator in eval mode: HxWx3 uint8 RGB in, model-size uint8 RGB out."""

    def __init__(self, generator: UnetGenerator, spec: GeneratorSpec, device: str | torch.device = "cpu"):
        self.spec = spec
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, device: str | torch.device = "cpu") -> Translator:
        state = read_generator_state(checkpoint)
        spec = generator_spec(state)
        if spec.input_nc != 3 or spec.output_nc != 3:
            raise CheckpointError(f"{checkpoint} maps {spec.input_nc} to {spec.output_nc} channels; only RGB to RGB is supported")
        generator = spec.build()
        load_state(generator, state, str(checkpoint))
        return cls(generator, spec, device)

    @property
    def size(self) -> int:
        return self.spec.size

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        batch = to_tensor(resize(image, self.size))[None].to(self.device)
        return to_image(self.generator(batch)[0])


@dataclass(frozen=True)
class PredictResult:
    outputs: list[Path]
    images: int
    videos: int

    def summary(self) -> str:
        where = self.outputs[0] if len(self.outputs) == 1 else self.outputs[0].parent
        return f"translated {self.images} image(s) and {self.videos} video(s) -> {where}"


def _expand(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            if not found:
                raise InputError(f"{item} holds no images or videos")
            files += found
        elif item.is_file():
            if item.suffix.lower() not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                raise InputError(f"{item} is neither an image nor a video (unknown suffix {item.suffix or 'none'})")
            files.append(item)
        else:
            raise InputError(f"{item} does not exist")
    if not files:
        raise InputError("give at least one image, folder or video")
    return files


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _targets(files: list[Path], output: Path) -> list[Path]:
    """One output file: same kind as the single input; else a folder of <stem>.png / <stem>.mp4."""
    if len(files) == 1 and output.suffix:
        wanted = VIDEO_SUFFIXES if _is_video(files[0]) else IMAGE_SUFFIXES
        if output.suffix.lower() not in wanted:
            kind = "video" if _is_video(files[0]) else "image"
            raise InputError(f"the input is an {kind} but {output} is not (give a .{'mp4' if kind == 'video' else 'png'} path or a folder)")
        return [output]
    if output.exists() and not output.is_dir():
        raise InputError(f"{output} is a file; several inputs need an output folder")
    targets = [output / (f.stem + (".mp4" if _is_video(f) else ".png")) for f in files]
    seen: set[Path] = set()
    for target, source in zip(targets, files):
        if target in seen:
            raise InputError(f"two inputs would both write {target} (rename {source})")
        seen.add(target)
    return targets


def predict(
    inputs: Iterable[str | os.PathLike],
    output: str | os.PathLike,
    checkpoint: str | os.PathLike,
    device: str = "cpu",
    aligned: bool = False,
    audio: bool = True,
    progress: Callable[[Iterable, str, int | None], Iterable] | None = None,
) -> PredictResult:
    """Translate each input (images, folders, videos frame by frame with their audio) with the generator.

    `aligned`: inputs are A|B pairs side by side, and A (the left half) is translated.
    Outputs are at the model's size; each is written atomically.
    """
    files = _expand(inputs)
    output = Path(output)
    targets = _targets(files, output)
    for source, target in zip(files, targets):
        if target.exists() and target.resolve() == source.resolve():
            raise InputError(f"the output {target} is one of the inputs: give another path")
    for video in filter(_is_video, files):
        probe_video(video)  # every video is checked before the slow part
    translator = Translator.load(checkpoint, device)
    images = videos = 0
    for source, target in zip(files, targets):
        if _is_video(source):
            _translate_video(translator, source, target, aligned, audio, progress)
            videos += 1
        else:
            image = load_image(source)
            save_image(target, translator(split_aligned(image, source)[0] if aligned else image))
            images += 1
    return PredictResult(targets, images, videos)


def _translate_video(translator: Translator, source: Path, target: Path, aligned: bool, audio: bool, progress) -> None:
    info = probe_video(source)
    keep_audio = audio and target.suffix.lower() != ".gif" and has_audio(source)
    frames: Iterable[np.ndarray] = iter_frames(source)
    if progress:
        frames = progress(frames, source.name, info.frame_count)
    with VideoWriter(target, info.fps, audio=source if keep_audio else None) as writer:
        for frame in frames:
            writer.write(translator(split_aligned(frame, source)[0] if aligned else frame))
