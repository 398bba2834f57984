"""Attack every frame of a video: perturb the face crop, paste it back, measure.

The face is followed through the video by the face pipeline's tracker and cropped the
way `fakelab detect` crops it (FaceForensics++: a square 1.3 times the face box, inside
the frame). The crop is attacked at its native resolution and written back into the
frame as it is, so no pixel outside it changes. Frames go to a lossless RGB H.264 file
(`<name>.lossless.mkv`, exactly the attacked pixels) and to the H.264 mp4 asked for; both
keep the source's audio. Every frame is scored before and after, and again after each
re-encoding asked for, with the same crop boxes, by the detection pipeline's scorer.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, replace
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from fakelab.atomic import atomic_output
from fakelab.attacks.methods import ATTACKS, AttackConfig, run_attack, to_uint8
from fakelab.attacks.quality import linf_levels, psnr, ssim
from fakelab.attacks.report import FrameRecord, VideoAttackReport
from fakelab.attacks.scoring import DetectorScorer
from fakelab.detection.pipeline import detector_device, ffpp_crop_box, score_frames
from fakelab.detection.spec import DeepfakeDetector
from fakelab.errors import ConfigError, InputError
from fakelab.faces.crop import crop_frame
from fakelab.faces.landmarks import landmark_box
from fakelab.faces.tracking import track_faces
from fakelab.provenance import COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA, Stamp
from fakelab.video import VideoWriter, has_audio, iter_frames, probe_video

PathLike = str | os.PathLike
Progress = Callable[[Iterable], Iterable]
DEFAULT_CRF = 18


def attack_video(
    video: PathLike,
    detector: DeepfakeDetector,
    output: PathLike,
    method: str = "ifgsm",
    config: AttackConfig = AttackConfig(),
    frames: int | None = None,
    recompress: Sequence[int] = (),
    crf: int = DEFAULT_CRF,
    face_detector: str | None = None,
    progress: Progress | None = None,
    provenance: bool = True,
) -> VideoAttackReport:
    """Attack the first `frames` frames (all by default) of `video` with `method`, write
    `output` (H.264 at `crf`), `<name>.lossless.mkv`, `<name>.report.json` and
    `<name>.report.md` beside it, and, for each CRF in `recompress`, `<name>.crf<N>.mp4`.

    With `provenance` (default) the frames carry fakelab's watermark (the input's own, when it
    has one, else a new one added before the attack, so the scores are those of the file) and
    the mp4s a signed C2PA manifest naming the input."""
    started = time.monotonic()
    output = Path(output)
    _check_request(video, output, method, frames, recompress, crf)
    config = config.for_method(method)
    info = probe_video(video)
    boxes, found = face_boxes(video, frames or info.frame_count, face_detector)
    detector.eval()
    lossless = output.with_name(output.stem + ".lossless.mkv")
    audio = video if has_audio(video) else None
    records: list[FrameRecord] = []
    size = detector.input_spec.size
    clean_crops, attacked_crops = [], []
    stamp = Stamp.for_edit_of(video, provenance)
    stream = enumerate(stamp.frames(islice(iter_frames(video), len(boxes))))
    with (
        VideoWriter(lossless, info.fps, audio, lossless=True) as exact,
        VideoWriter(output, info.fps, audio, crf=crf) as delivered,
    ):
        for index, frame in progress(stream) if progress else stream:
            attacked, record = _attack_frame(frame, index, boxes[index], found[index], detector, method, config)
            records.append(record)
            clean_crops.append(crop_frame(frame, boxes[index], size))
            attacked_crops.append(crop_frame(attacked, boxes[index], size))
            exact.write(attacked)
            delivered.write(attacked)
    before, after = score_frames(detector, clean_crops), score_frames(detector, attacked_crops)
    for record, logit_before, logit_after in zip(records, before, after):
        record.logit_before, record.logit_after = float(logit_before), float(logit_after)
    recompressed = {crf: output}
    for level in [level for level in dict.fromkeys(recompress) if level != crf]:
        recompressed[level] = _reencode(lossless, output.with_name(f"{output.stem}.crf{level}.mp4"), info.fps, level)
    for level, path in recompressed.items():
        for record, logit in zip(records, _rescore(path, detector, boxes)):
            record.recompressed[level] = float(logit)
    report = VideoAttackReport(
        source=Path(video),
        output=output,
        lossless=lossless,
        method=method,
        detector=detector.arch,
        config=asdict(config),
        frames=records,
        recompressed_videos=recompressed,
        delivered_crf=crf,
        seconds=time.monotonic() - started,
    )
    for path in recompressed.values():
        stamp.sign(path, [video], action="c2pa.edited", source_type=COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
                   description=f"adversarial perturbation of the face against a deepfake detector ({method})",
                   parameters={"method": method, "eps": config.eps, "detector": detector.arch})
    write_report(report, output)
    return report


def face_boxes(video: PathLike, count: int, face_detector: str | None = None) -> tuple[list[list[int]], list[bool]]:
    """The FaceForensics++ crop box of the main face in each of the first `count` frames,
    and whether the face was found there (else its box is held from a nearby frame)."""
    tracking = track_faces(islice(iter_frames(video), count), face_detector)
    face = tracking.face(0, where=str(video))
    boxes = [ffpp_crop_box(landmark_box(landmarks), tracking.frame_size) for landmarks in face.landmarks]
    return boxes, face.detected.tolist()


def report_paths(output: PathLike) -> tuple[Path, Path]:
    """Where the JSON and Markdown reports of an attack writing `output` go."""
    output = Path(output)
    return output.with_name(output.stem + ".report.json"), output.with_name(output.stem + ".report.md")


def write_report(report: VideoAttackReport, output: PathLike) -> None:
    json_path, markdown_path = report_paths(output)
    with atomic_output(json_path) as tmp:
        tmp.write_text(json.dumps(report.to_json(), indent=2))
    with atomic_output(markdown_path) as tmp:
        tmp.write_text(report.to_markdown())


def attack_crop(
    crop: np.ndarray,
    detector: DeepfakeDetector,
    method: str,
    config: AttackConfig,
):
    """Attack one uint8 face crop; returns (adversarial uint8 crop, AttackResult).

    The result is rounded to uint8 and its change clipped to the whole levels inside
    `eps`, so the budget holds exactly in the file.
    """
    device = detector_device(detector)
    image = torch.from_numpy(crop).permute(2, 0, 1)[None].float().div(255).to(device)
    result = run_attack(method, DetectorScorer(detector), image, config)
    adversarial = to_uint8(image, result.adversarial, config.eps).byte()[0].permute(1, 2, 0).cpu().numpy()
    return adversarial, result


def _attack_frame(
    frame: np.ndarray,
    index: int,
    box: list[int],
    face_found: bool,
    detector: DeepfakeDetector,
    method: str,
    config: AttackConfig,
) -> tuple[np.ndarray, FrameRecord]:
    left, top, right, bottom = box
    crop = frame[top:bottom, left:right]
    adversarial, result = attack_crop(crop, detector, method, replace(config, seed=config.seed + index))
    attacked = frame.copy()
    attacked[top:bottom, left:right] = adversarial
    record = FrameRecord(
        index=index,
        box=list(box),
        face_found=face_found,
        iterations=int(result.iterations[0]),
        queries=int(result.queries[0]),
        linf=linf_levels(crop, adversarial),
        psnr=psnr(crop, adversarial),
        ssim=ssim(crop, adversarial),
    )
    return attacked, record


def _reencode(source: Path, target: Path, fps: float, crf: int) -> Path:
    with VideoWriter(target, fps, crf=crf) as writer:
        for frame in iter_frames(source):
            writer.write(frame)
    return target


def _rescore(path: Path, detector: DeepfakeDetector, boxes: Sequence[list[int]]) -> np.ndarray:
    size = detector.input_spec.size
    crops = [crop_frame(frame, box, size) for frame, box in zip(iter_frames(path), boxes)]
    return score_frames(detector, crops)


def _check_request(
    video: PathLike, output: Path, method: str, frames: int | None, recompress: Sequence[int], crf: int
) -> None:
    if method not in ATTACKS:
        raise ConfigError(f"unknown attack {method!r}; known: {', '.join(ATTACKS)}")
    if output.suffix.lower() not in {".mp4", ".mov", ".mkv"}:
        raise InputError(f"the attacked video must be .mp4, .mov or .mkv, got {output}")
    if Path(video).resolve() == output.resolve():
        raise InputError(f"the output {output} is the input: give another path")
    if frames is not None and frames < 1:
        raise InputError(f"--frames must be at least 1, got {frames}")
    for level in (crf, *recompress):
        if not 0 <= level <= 51:
            raise InputError(f"H.264 CRF values run from 0 to 51, got {level}")
