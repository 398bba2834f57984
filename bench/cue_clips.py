"""The clips of the cue benches, made from ../shared/media and cached in a folder.

Three sets, each clip 3 s (3.6 s for the short videos):
- real: segments cut from the talking-head videos, audio kept (d11 and d12 carry speech;
  d18's audio track is silent; d0 and d13 have none);
- motion: motion-transfer fakes by `fakelab.animate` (landmark-warp, crop + paste-back) of
  a portrait (s0, s3, s4, s7, s11) or of a frame of another video (d0, d13, d18), driven
  by a real segment and keeping its audio: lips and sound stay in sync;
- dubbed: the same kind of fakes with another speaker's audio (`audio=FILE`).

    nice -n 10 .venv/bin/python bench/cue_clips.py [--out /tmp/fakelab-cue-clips]

prints the clip list; existing clips are kept (delete the folder to remake them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import fakelab  # noqa: E402
from fakelab.video import VideoWriter, iter_frames, probe_video, save_image  # noqa: E402
from fakelab.video.audio import decode_audio, write_wav  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"
DEFAULT_OUT = Path("/tmp/fakelab-cue-clips")
AUDIO_RATE = 16000
# (video, start seconds, seconds)
REAL_SEGMENTS = [
    ("d11", 0.0, 3.0), ("d11", 3.0, 3.0), ("d11", 6.0, 3.0),
    ("d12", 0.0, 3.0), ("d12", 3.0, 3.0),
    ("d18", 0.0, 3.6), ("d18", 3.6, 3.6),
    ("d0", 0.0, 3.0),
    ("d13", 0.0, 3.0), ("d13", 4.0, 3.0), ("d13", 8.0, 3.0),
]
SPEECH = ("d11", "d12")
PORTRAITS = ("s0", "s3", "s4", "s7", "s11")
# Frames of other videos used as sources: (video, second).
VIDEO_SOURCES = (("d0", 1.0), ("d13", 2.0), ("d18", 5.0))


def clip_name(video: str, start: float) -> str:
    return f"{video}_{start:g}s"


def cut(video: str, start: float, seconds: float, out: Path, work: Path) -> Path:
    """Frames [start, start + seconds) of a shared video, with that stretch of its audio."""
    source = MEDIA / f"{video}.mp4"
    info = probe_video(source)
    first, count = round(start * info.fps), round(seconds * info.fps)
    audio = None
    if info.has_audio:
        samples = decode_audio(source, AUDIO_RATE)
        audio = work / f"{out.stem}.wav"
        write_wav(audio, samples[round(start * AUDIO_RATE) : round((start + seconds) * AUDIO_RATE)], AUDIO_RATE)
    with VideoWriter(out, info.fps, audio=audio) as writer:
        for index, frame in enumerate(iter_frames(source)):
            if index >= first + count:
                break
            if index >= first:
                writer.write(frame)
    return out


def video_frame(video: str, second: float, out: Path) -> Path:
    info = probe_video(MEDIA / f"{video}.mp4")
    wanted = round(second * info.fps)
    for index, frame in enumerate(iter_frames(MEDIA / f"{video}.mp4")):
        if index == wanted:
            save_image(out, frame)
            return out
    raise SystemExit(f"{video} has no frame at {second} s")


def make_clips(out: Path) -> list[dict]:
    """Make (or find) every clip; returns [{path, set, video, source, audio}]."""
    work = out / "work"
    for folder in (out / "real", out / "motion", out / "dubbed", work):
        folder.mkdir(parents=True, exist_ok=True)
    clips: list[dict] = []
    real: dict[str, Path] = {}
    for video, start, seconds in REAL_SEGMENTS:
        path = out / "real" / f"{clip_name(video, start)}.mp4"
        if not path.exists():
            cut(video, start, seconds, path, work)
        real[clip_name(video, start)] = path
        clips.append({"path": str(path), "set": "real", "video": video, "source": video, "audio": video})
    sources = [MEDIA / f"{name}.jpg" for name in PORTRAITS]
    for video, second in VIDEO_SOURCES:
        frame = work / f"{video}_frame.png"
        if not frame.exists():
            video_frame(video, second, frame)
        sources.append(frame)

    def source_name(path: Path) -> str:
        return path.stem.replace("_frame", "")

    speech = [name for name in real if name.split("_")[0] in SPEECH]
    plans = []  # (set, driving name, source path, audio name)
    turn = 0
    for name in speech:
        for _ in range(2):
            driving_video = name.split("_")[0]
            source = sources[turn % len(sources)]
            turn += 1
            if source_name(source) == driving_video:
                source = sources[turn % len(sources)]
                turn += 1
            plans.append(("motion", name, source, name))
            other = [n for n in speech if n.split("_")[0] != driving_video]
            dub_source = sources[(turn + 3) % len(sources)]
            plans.append(("dubbed", name, dub_source, other[turn % len(other)]))
    for name in ("d0_0s", "d13_0s", "d18_0s"):
        plans.append(("motion", name, sources[turn % len(sources)], name))
        turn += 1
    for kind, driving, source, audio in plans:
        path = out / kind / f"{source_name(source)}__{driving}__{audio}.mp4"
        if not path.exists():
            audio_arg = "keep" if audio == driving else str(real[audio])
            result = fakelab.animate(
                str(source), str(real[driving]), str(path), model="landmark-warp",
                crop=True, paste_back=True, audio=audio_arg,
            )
            print(result.summary(), flush=True)
        clips.append({"path": str(path), "set": kind, "video": driving.split("_")[0],
                      "source": source_name(source), "audio": audio.split("_")[0]})
    (out / "clips.json").write_text(json.dumps(clips, indent=1))
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    for clip in make_clips(args.out):
        print(clip["set"], clip["path"])


if __name__ == "__main__":
    main()
