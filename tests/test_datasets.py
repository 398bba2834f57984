"""Datasets: the reference video layouts, splits, id sampling, keyed (resumable) sampling, augmentations, prepare."""

import numpy as np
import pytest
import torch
from PIL import Image

from fakelab.cli import main as cli
from fakelab.datasets import (
    ClipAugmentation,
    FlipParams,
    FramesDataset,
    JitterParams,
    SampleKeys,
    TrainingPairs,
    VideoEntry,
    split_videos,
    to_tensor,
)
from fakelab.datasets.augment import adjust_hue, adjust_saturation, hsv_to_rgb, rgb_to_hsv
from fakelab.errors import ConfigError, InputError
from fakelab.video import VideoWriter, save_image


def synthetic_clip(frames=5, size=32, seed=0):
    """Frames that differ from each other: a bright square moving right over a gradient."""
    ramp = np.linspace(0, 120, size, dtype=np.float64)
    background = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1), np.full((size, size), 40.0 * seed)], -1)
    clip = np.repeat(background[None].astype(np.uint8), frames, axis=0)
    for t in range(frames):
        clip[t, 10:18, 2 + 4 * t : 10 + 4 * t] = (250, 200, 30)
    return clip


def write_folder(path, clip):
    for index, frame in enumerate(clip):
        save_image(path / f"{index:04d}.png", frame)


def write_strip(path, clip):
    save_image(path, np.concatenate(list(clip), axis=1))


def test_every_video_layout_reads_the_same_frames(tmp_path):
    clip = synthetic_clip()
    write_folder(tmp_path / "folder", clip)
    write_strip(tmp_path / "strip.png", clip)
    with VideoWriter(tmp_path / "video.mp4", fps=10) as writer:
        for frame in clip:
            writer.write(frame)
    size = (32, 32)
    assert np.array_equal(VideoEntry(tmp_path / "folder", size).read(), clip)
    assert np.array_equal(VideoEntry(tmp_path / "strip.png", size).read(), clip)
    with VideoWriter(tmp_path / "video.gif", fps=10) as writer:
        for frame in clip:
            writer.write(frame)
    for lossy in ("video.mp4", "video.gif"):
        video = VideoEntry(tmp_path / lossy, size).read()
        assert video.shape == clip.shape
        assert np.abs(video.astype(int) - clip).mean() < 6, lossy
    # A folder decodes only the frames asked for, in the order asked.
    assert np.array_equal(VideoEntry(tmp_path / "folder", size).read(lambda count: [count - 1, 0]), clip[[4, 0]])


def test_frames_at_another_size_are_resized_and_bad_strips_refused(tmp_path):
    clip = synthetic_clip(size=32)
    write_folder(tmp_path / "folder", clip)
    assert VideoEntry(tmp_path / "folder", (16, 16)).read().shape == (5, 16, 16, 3)
    save_image(tmp_path / "bad.png", np.zeros((32, 70, 3), np.uint8))
    with pytest.raises(InputError, match="not a whole number of 32x32 frames"):
        VideoEntry(tmp_path / "bad.png", (32, 32)).read()
    (tmp_path / "notes.txt").write_text("not a video")
    with pytest.raises(InputError, match="not a dataset video"):
        VideoEntry(tmp_path / "notes.txt", (32, 32))


def test_splits_from_folders_or_a_seeded_random_split(tmp_path):
    for name in ("a#1", "a#2", "b#1"):
        write_folder(tmp_path / "split" / "train" / name, synthetic_clip(2))
    write_folder(tmp_path / "split" / "test" / "c#1", synthetic_clip(2))
    assert [p.name for p in split_videos(tmp_path / "split", "test")] == ["c#1"]
    for index in range(10):
        write_strip(tmp_path / "flat" / f"v{index}.png", synthetic_clip(2))
    test = split_videos(tmp_path / "flat", "test", seed=3)
    train = split_videos(tmp_path / "flat", "train", seed=3)
    assert len(test) == 2 and len(train) == 8 and not set(test) & set(train)
    assert split_videos(tmp_path / "flat", "test", seed=3) == test
    with pytest.raises(InputError, match="no such|does not exist"):
        split_videos(tmp_path / "missing", "train")


def test_id_sampling_groups_videos_by_identity(tmp_path):
    for name in ("a#1", "a#2", "a#3", "b#1"):
        write_folder(tmp_path / "train" / name, synthetic_clip(3))
    write_folder(tmp_path / "test" / "c#1", synthetic_clip(3))
    by_id = FramesDataset(tmp_path, (32, 32, 3), "train", id_sampling=True)
    by_video = FramesDataset(tmp_path, (32, 32, 3), "train", id_sampling=False)
    assert len(by_id) == 2 and len(by_video) == 4
    assert sorted(len(group) for group in by_id.groups) == [1, 3]


def test_training_pairs_are_fixed_by_their_key(tmp_path):
    for index in range(3):
        write_folder(tmp_path / "train" / f"v{index}", synthetic_clip(6, seed=index))
    write_folder(tmp_path / "test" / "t", synthetic_clip(3))
    frames = FramesDataset(tmp_path, (32, 32, 3), "train")
    augmentation = ClipAugmentation(FlipParams(True, True), JitterParams(0.1, 0.1, 0.1, 0.1))
    pairs = TrainingPairs(frames, augmentation, seed=5)
    first, again = pairs[7], TrainingPairs(frames, augmentation, seed=5)[7]
    assert torch.equal(first["source"], again["source"]) and torch.equal(first["driving"], again["driving"])
    assert not torch.equal(pairs[8]["driving"], first["driving"])
    # Each pass over the dataset visits every video once.
    assert sorted(pairs.unit_of(key) for key in range(3, 6)) == [0, 1, 2]


def test_sample_keys_resume_and_split_over_processes():
    def take(sampler, count):
        iterator = iter(sampler)
        return [next(iterator) for _ in range(count)]

    assert take(SampleKeys(4, start_step=0), 12)[8:] == take(SampleKeys(4, start_step=2), 4)
    rank0, rank1 = take(SampleKeys(2, 1, rank=0, world_size=2), 2), take(SampleKeys(2, 1, rank=1, world_size=2), 2)
    assert rank0 + rank1 == take(SampleKeys(4, start_step=1), 4)


def test_flips_mirror_space_and_time():
    clip = to_tensor(synthetic_clip(2))
    always = ClipAugmentation(FlipParams(horizontal_flip=True, time_flip=True))

    class Heads:  # a generator whose coins always come up "flip"
        def random(self):
            return 0.0

    flipped = always(clip, Heads())
    assert torch.equal(flipped, clip.flip(0).flip(3))


def test_colour_jitter_on_known_colours():
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0
    green = adjust_hue(red, 1 / 3)
    assert torch.allclose(green, torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1).expand_as(red), atol=1e-5)
    grey = adjust_saturation(red, 0.0)
    assert torch.allclose(grey, torch.full_like(red, 0.299))
    colours = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(colours)), colours, atol=1e-5)
    jitter = ClipAugmentation(jitter=JitterParams(brightness=0.5))
    darker = jitter(torch.full((2, 3, 4, 4), 0.5), np.random.default_rng(0))
    factor = float(darker[0, 0, 0, 0] / 0.5)
    assert 0.5 <= factor <= 1.5 and torch.allclose(darker, torch.full_like(darker, 0.5 * factor))


def test_augmentations_come_from_the_config():
    augmentation = ClipAugmentation.from_config(
        {"flip_param": {"horizontal_flip": True, "time_flip": False}, "jitter_param": {"hue": 0.1}}
    )
    assert augmentation.flip == FlipParams(True, False) and augmentation.jitter.params.hue == 0.1
    with pytest.raises(ConfigError, match="rotation_param is not supported"):
        ClipAugmentation.from_config({"rotation_param": {"degrees": 10}})
    with pytest.raises(ConfigError, match="hue must be in"):
        ClipAugmentation.from_config({"jitter_param": {"hue": 0.7}})


def test_dataset_prepare_crops_faces_into_clips(media, tmp_path, capsys):
    out = tmp_path / "dataset"
    args = ["-o", str(out), "--size", "64"]
    assert cli(["dataset", "prepare", str(media / "d0.mp4"), str(media / "d12.mp4"), *args]) == 0
    printed = capsys.readouterr().out
    # Auto split: whole videos go to one split, at least one to test/.
    assert "clip(s) in test/" in printed and "clip(s) in train/" in printed
    clips = sorted(p for split in ("train", "test") for p in (out / split).iterdir())
    assert {clip.name.split("#")[0] for clip in clips} == {"d0", "d12"}
    assert not list(out.rglob(".*partial*"))
    frames = VideoEntry(clips[0], (64, 64)).read()
    assert frames.shape[1:] == (64, 64, 3) and len(frames) >= 16
    assert Image.open(next(clips[0].iterdir())).size == (64, 64)
    # A second run into the same folder continues the first: finished videos are not redone.
    d0_split = next(clip.parent.name for clip in clips if clip.name.startswith("d0#"))
    stamps = {clip: clip.stat().st_mtime_ns for clip in clips}
    assert cli(["dataset", "prepare", str(media / "d0.mp4"), *args, "--split", d0_split]) == 0
    assert "(prepared by an earlier run)" in capsys.readouterr().out
    assert {clip: clip.stat().st_mtime_ns for clip in clips} == stamps
    # With other options it refuses rather than mixing two kinds of clips.
    assert cli(["dataset", "prepare", str(media / "d0.mp4"), "-o", str(out), "--size", "32"]) == 1
    assert "other options" in capsys.readouterr().err


def test_dataset_prepare_skips_a_bad_video_and_resumes_after_an_interruption(media, tmp_path, capsys, monkeypatch):
    import fakelab.datasets.prepare as prepare

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    out = tmp_path / "ds"
    args = ["-o", str(out), "--size", "32", "--no-face-crop", "--min-frames", "4", "--split", "train"]
    # The first run is stopped while it writes the second video's clip.
    original, calls = prepare._write_segments, []

    def interrupted_on_second_video(*arguments):
        calls.append(arguments[2])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*arguments)

    monkeypatch.setattr(prepare, "_write_segments", interrupted_on_second_video)
    assert cli(["dataset", "prepare", str(media / "d0.mp4"), str(broken), str(media / "d12.mp4"), *args]) == 130
    assert [clip.name for clip in (out / "train").iterdir()] == ["d0#000"]
    monkeypatch.setattr(prepare, "_write_segments", original)
    capsys.readouterr()
    # Run again: d0 is not redone, the broken video stays skipped with its reason, d12 is written.
    stamp = (out / "train" / "d0#000").stat().st_mtime_ns
    assert cli(["dataset", "prepare", str(media / "d0.mp4"), str(broken), str(media / "d12.mp4"), *args]) == 0
    printed = capsys.readouterr().out
    assert "d0.mp4: 1 clip(s) in train/ (prepared by an earlier run)" in printed
    assert "broken.mp4: skipped by an earlier run (" in printed and "not a readable video" in printed
    assert "d12.mp4: 1 clip(s) in train/" in printed
    assert sorted(clip.name for clip in (out / "train").iterdir()) == ["d0#000", "d12#000"]
    assert (out / "train" / "d0#000").stat().st_mtime_ns == stamp
