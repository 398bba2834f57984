"""What the attack benches share: the clips, the detector they attack, and the clips it
catches.

Only three real videos exist (../shared/media d0, d12, d13), so the split is in time:

- each video is face-cropped to 256x256 (the face pipeline's crop, what the animation
  models take and give); its first TRAIN_FRACTION of frames is cut into clips of
  CLIP_FRAMES frames for training, the rest into clips for testing;
- fakes are made with the landmark-warp animator (no checkpoint needed): every clip drives
  sources of other identities, the three portraits (s0, s4, s7) and the first frame of
  each other video's part of the same split, so train and test fakes never share a
  driving clip or a source frame;
- the detector is EfficientNet-Lite0 from its ImageNet weights, trained by the detection
  package (`fakelab.detection.train.train_detector`, the engine of `fakelab
  train-detector`) on the training reals and fakes, with self-blended pseudo-fakes too.

Everything is written under the work folder and reused by later runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fakelab.animation.api import animate
from fakelab.animation.landmark_warp import LandmarkWarpAnimator
from fakelab.detection.pipeline import score_file
from fakelab.detection.spec import DeepfakeDetector
from fakelab.detection.train import TrainingConfig, train_detector
from fakelab.faces.crop import crop_image, crop_video
from fakelab.video import VideoWriter, iter_frames, load_image, probe_video

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
DEFAULT_WORK = Path("/tmp/fakelab-attack-bench")
VIDEOS = ("d0", "d12", "d13")
PORTRAITS = ("s0", "s4", "s7")
SIZE = 256
TRAIN_FRACTION = 0.6
CLIP_FRAMES = 24
SPLITS = ("train", "test")
DETECTOR_CONFIG = TrainingConfig(epochs=4, frames_per_video=8, pseudo_fakes="self-blend", patience=2)
# The bar for a clip to attack: the detector calls at least this share of its frames fake.
CAUGHT = 0.9


def log(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class Clips:
    work: Path

    def folder(self, split: str, kind: str) -> Path:
        return self.work / f"{split}_{kind}"


def _write_clip(path: Path, frames: list[np.ndarray], fps: float) -> None:
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.write(frame)


def _cut(frames: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Consecutive CLIP_FRAMES-frame clips; a remainder of at least half a clip is kept."""
    cut = [frames[i : i + CLIP_FRAMES] for i in range(0, len(frames), CLIP_FRAMES)]
    return [clip for clip in cut if len(clip) >= CLIP_FRAMES // 2]


def prepare_clips(work: Path = DEFAULT_WORK, media: Path = MEDIA) -> Clips:
    """Real and fake clips of both splits (made once, then reused)."""
    clips = Clips(work)
    done = work / "clips.json"
    if done.exists():
        return clips
    started = time.perf_counter()
    sources: dict[str, dict[str, np.ndarray]] = {split: {} for split in SPLITS}
    for name in VIDEOS:
        cropped = work / "crops" / f"{name}.mp4"
        if not cropped.exists():
            crop_video(media / f"{name}.mp4", cropped, size=SIZE)
        fps = probe_video(cropped).fps
        frames = list(iter_frames(cropped))
        boundary = round(TRAIN_FRACTION * len(frames))
        for split, part in zip(SPLITS, (frames[:boundary], frames[boundary:])):
            folder = clips.folder(split, "real")
            folder.mkdir(parents=True, exist_ok=True)
            for index, clip in enumerate(_cut(part)):
                _write_clip(folder / f"{name}_{split}{index}.mp4", clip, fps)
            sources[split][name] = part[0]
    for name in PORTRAITS:
        portrait = crop_image(load_image(media / f"{name}.jpg"), size=SIZE).image
        for split in SPLITS:
            sources[split][name] = portrait
    animator = LandmarkWarpAnimator(size=(SIZE, SIZE))
    for split in SPLITS:
        folder = clips.folder(split, "fake")
        folder.mkdir(parents=True, exist_ok=True)
        for driving in sorted(clips.folder(split, "real").glob("*.mp4")):
            identity = driving.stem.split("_")[0]
            for name, source in sources[split].items():
                if name != identity:
                    animate(source, driving, folder / f"{name}_by_{driving.stem}.mp4", animator=animator, audio="none")
    counts = {f"{split}_{kind}": len(list(clips.folder(split, kind).glob("*.mp4"))) for split in SPLITS for kind in ("real", "fake")}
    done.write_text(json.dumps(counts))
    log(f"clips made in {time.perf_counter() - started:.0f} s: {counts}")
    return clips


def trained_detector(
    clips: Clips, name: str = "lite0", config: TrainingConfig = DETECTOR_CONFIG, init: Path | None = None
) -> Path:
    """The detector trained on the training clips (trained once, then reused), from ImageNet
    or from the detector at `init`."""
    output = clips.work / f"{name}.safetensors"
    if output.exists() and not output.with_name(output.name + ".state.pt").exists():
        return output
    state = output.with_name(output.name + ".state.pt")
    started = time.perf_counter()
    result = train_detector(
        clips.folder("train", "real"), clips.folder("train", "fake"), output, config,
        resume=state.exists(), init=init, log=log,
    )
    state.unlink()
    log(f"{name}: {result.summary()} ({time.perf_counter() - started:.0f} s)")
    return output


def caught_fakes(detector: DeepfakeDetector, clips: Clips, limit: int | None = None) -> list[tuple[Path, float]]:
    """Test fakes whose frames the detector calls fake at least CAUGHT of the time, with that share."""
    caught = []
    videos = sorted(clips.folder("test", "fake").glob("*.mp4"))
    # A seeded shuffle, so that the first ones caught come from different sources and clips.
    for index in np.random.default_rng(0).permutation(len(videos)):
        video = videos[index]
        rate = float(np.mean(score_file(detector, video, frames=CLIP_FRAMES).logits >= 0))
        if rate >= CAUGHT:
            caught.append((video, rate))
        if limit is not None and len(caught) == limit:
            break
    return caught

