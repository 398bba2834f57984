"""pix2pix: parity with the reference networks, data, training with exact resume, predict, reenactment, CLI errors.

The parity fixture (../shared/fixtures/pix2pix) holds the reference's unet_256 and
PatchGAN at width 16 with seeded weights and their outputs in eval mode. The
training tests use unet_128 at width 2 on four synthetic 128 px pairs.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared_path
from fakelab.animation.api import MODELS, build_animator
from fakelab.cli import main as cli
from fakelab.errors import CheckpointError, InputError
from fakelab.pix2pix.data import PairedImages, default_load_size, find_pairs, to_image, to_tensor
from fakelab.pix2pix.networks import (
    NLayerDiscriminator,
    build_generator,
    discriminator_spec,
    generator_spec,
    load_state,
)
from fakelab.pix2pix.pairs import crop_landmarks, make_pairs
from fakelab.pix2pix.predict import Translator, predict, read_generator_state
from fakelab.pix2pix.reenact import LandmarksToFaceAnimator
from fakelab.pix2pix.sketch import FACE_PARTS, landmark_sketch
from fakelab.pix2pix.train import GENERATOR_NAME, STATE_NAME, Pix2PixOptions, RunOptions, train
from fakelab.video import VideoWriter, has_audio, iter_frames, probe_video, save_image

TINY = dict(generator="unet_128", ngf=2, ndf=2, n_epochs=1, n_epochs_decay=2)
QUIET = dict(progress=False, tensorboard=False)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """On a busy two-core machine one thread is several times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fixtures() -> Path:
    return shared_path("fixtures", "pix2pix")


def state_dict_listing(path: Path) -> tuple[list[tuple[str, tuple[int, ...]]], int]:
    lines = path.read_text().splitlines()
    params = int(lines[0].split(" params")[0].split()[-1])
    entries = []
    for line in lines[1:]:
        key, shape = line.split(" (", 1)
        dims = shape.split(")")[0]
        entries.append((key.strip(), tuple(int(d) for d in dims.split(",") if d.strip())))
    return entries, params


def listing_of(module: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(value.shape)) for key, value in module.state_dict().items()]


# --- networks ---------------------------------------------------------------------------------


def test_full_size_keys_shapes_and_parameter_counts_match_the_reference(fixtures):
    for listing, module, count in (
        ("unet_256.state_dict.txt", build_generator("unet_256", 64), 54_413_955),
        ("patchgan.state_dict.txt", NLayerDiscriminator(6, 64, 3), 2_768_705),
    ):
        entries, params = state_dict_listing(fixtures / listing)
        assert params == count
        assert listing_of(module) == entries
        assert sum(p.numel() for p in module.parameters()) == count


def test_generator_and_discriminator_reproduce_the_reference_outputs(fixtures):
    io = np.load(fixtures / "pix2pix-io.npz")
    state = read_generator_state(fixtures / "generator.pth")
    spec = generator_spec(state)
    assert (spec.name, spec.ngf, spec.norm, spec.size) == ("unet_256", 16, "batch", 256)
    generator = spec.build()
    load_state(generator, state, "generator.pth")
    d_state = torch.load(fixtures / "discriminator.pth", weights_only=True)
    assert discriminator_spec(d_state) == (6, 16, 3, "batch")
    discriminator = NLayerDiscriminator(6, 16, 3)
    load_state(discriminator, d_state, "discriminator.pth")
    a, b = torch.from_numpy(io["input_A"]), torch.from_numpy(io["input_B"])
    with torch.no_grad():
        out_g = generator.eval()(a).numpy()
        out_d = discriminator.eval()(torch.cat([a, b], 1)).numpy()
        out_g_train = generator.train()(a).numpy()
    assert np.abs(out_g - io["output_G"]).max() < 1e-5
    assert np.abs(out_d - io["output_D"]).max() < 1e-5
    # Train mode (batch statistics, dropout) is far off: the comparison can fail.
    assert np.abs(out_g_train - io["output_G"]).max() > 0.05


def test_unet_128_instance_norm_and_spec_inference():
    generator = build_generator("unet_128", 4, "instance")
    dropouts = [m for m in generator.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(dropouts) == 2  # num_downs - 5 levels, as the reference
    assert len(build_generator("unet_256", 4).state_dict()) == 82
    assert not any("running" in key for key in generator.state_dict())
    assert "model.model.1.model.1.bias" in generator.state_dict()  # the reference's use_bias with instance norm
    spec = generator_spec(generator.state_dict())
    assert (spec.name, spec.ngf, spec.norm, spec.size) == ("unet_128", 4, "instance", 128)
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    y = generator.eval()(x)
    assert y.shape == (1, 3, 128, 128) and y.abs().max() <= 1
    assert NLayerDiscriminator(6, 4, 3, "instance")(torch.cat([x, y], 1)).shape == (1, 1, 14, 14)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_state(build_generator("unet_128", 8), generator.state_dict(), "g.pth")
    # Files saved by PyTorch < 0.4 (the release's pretrained models): InstanceNorm with running
    # statistics, BatchNorm without num_batches_tracked; both load as the release patches them.
    old_instance = dict(generator.state_dict())
    old_instance["model.model.1.model.2.running_mean"] = torch.zeros(8)
    old_instance["model.model.1.model.2.running_var"] = torch.ones(8)
    assert generator_spec(old_instance).norm == "instance"
    load_state(build_generator("unet_128", 4, "instance"), old_instance, "old.pth")
    batch = build_generator("unet_128", 4)
    old_batch = {k: v for k, v in batch.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert generator_spec(old_batch).norm == "batch"
    load_state(build_generator("unet_128", 4), old_batch, "old.pth")
    with pytest.raises(CheckpointError, match="not a pix2pix U-Net"):
        generator_spec(NLayerDiscriminator(6, 4).state_dict())


# --- data -------------------------------------------------------------------------------------


def gradient_image(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:size, :size]
    base = np.stack([xs, ys, (xs + ys) // 2], axis=2) * (255 / (size - 1))
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> Path:
    """Four training and two test A|B pairs at 128 px; B is a colour-shifted A."""
    root = tmp_path_factory.mktemp("pairs")
    for split, count in (("train", 4), ("test", 2)):
        for index in range(count):
            a = gradient_image(128, index + (10 if split == "test" else 0))
            b = (255 - a[:, ::-1]).copy()
            save_image(root / split / f"{index}.png", np.concatenate([a, b], axis=1))
    return root


def test_aligned_and_folder_layouts_and_shared_augmentation(paired, tmp_path):
    aligned = PairedImages(paired, "train", 128)
    assert len(aligned) == 4 and aligned.load_size == default_load_size(128) == 143
    assert default_load_size(256) == 286
    a, b = aligned.images(0)
    assert a.shape == b.shape == (128, 128, 3)
    for split in ("A", "B"):
        (tmp_path / split).mkdir()
    for index in range(3):
        image = gradient_image(128, index)
        save_image(tmp_path / "A" / f"{index}.png", image)
        save_image(tmp_path / "B" / f"{index}.png", image)  # B == A: augmentations must keep them equal
    folders = PairedImages(tmp_path, "train", 128)
    assert [pair.name for pair in folders.pairs] == ["0.png", "1.png", "2.png"]
    flips = set()
    for seed in range(6):
        rng = np.random.default_rng(seed)
        sample_a, sample_b = folders.sample(0, rng)
        assert sample_a.shape == (3, 128, 128) and torch.equal(sample_a, sample_b)
        flips.add(bool(sample_a[0, 64, 10] > sample_a[0, 64, 117]))  # red grows left to right unless flipped
    assert flips == {True, False}
    assert find_pairs(tmp_path, "test") == []
    save_image(tmp_path / "B" / "extra.png", gradient_image(32, 0))
    with pytest.raises(InputError, match="extra.png is in only one"):
        find_pairs(tmp_path)
    with pytest.raises(InputError, match="neither a train/ folder"):
        find_pairs(tmp_path / "A")
    image = gradient_image(64, 3)
    assert np.array_equal(to_image(to_tensor(image)), image)


def test_landmark_sketch_draws_each_part_in_its_colour():
    # Each part on its own row, its points 8 px apart, so that no two parts touch.
    landmarks = np.zeros((68, 2))
    for row, (first, last, _closed, _colour) in enumerate(FACE_PARTS):
        landmarks[first:last] = [(10 + 8 * i, 12 + 12 * row) for i in range(last - first)]
    sketch = landmark_sketch(landmarks, 256)
    assert sketch.shape == (256, 256, 3) and sketch.dtype == np.uint8
    for first, _last, _closed, colour in FACE_PARTS[:4]:  # the nose base shares point 30 with the bridge
        x, y = np.round((landmarks[first] + landmarks[first + 1]) / 2).astype(int)
        assert np.abs(sketch[y, x].astype(int) - colour).max() < 40, colour
    assert (sketch.sum(axis=2) > 0).mean() < 0.1  # lines on black


def test_pairs_from_a_video(media, tmp_path):
    clip = tmp_path / "d0.mp4"  # the first 24 frames of d0 at 256 px: enough to follow the face
    with VideoWriter(clip, 25, lossless=True) as writer:
        for _, frame in zip(range(24), iter_frames(media / "d0.mp4", size=(256, 256))):
            writer.write(frame)
    result = make_pairs([clip], tmp_path / "pairs", "landmarks", size=64, test_fraction=0.25, every=2)
    assert (result.train, result.test, result.skipped) == (9, 3, 0)  # every 2nd frame, the last quarter held out
    names = sorted(p.name for p in (tmp_path / "pairs" / "test").iterdir())
    assert names == ["d0_00018.png", "d0_00020.png", "d0_00022.png"]
    pairs = PairedImages(tmp_path / "pairs", "train", 64)
    sketch, crop = pairs.images(0)
    assert sketch.shape == crop.shape == (64, 64, 3)
    assert (sketch.sum(axis=2) > 0).mean() < 0.2 and crop.std() > 10
    # The sketch is drawn where the face is: the crop's own landmarks fall on its lines.
    from fakelab.faces import largest_face

    landmarks = largest_face(crop, "the crop")
    lit = sketch.sum(axis=2) > 0
    on_lines = [lit[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].any() for x, y in np.round(landmarks).astype(int)]
    assert np.mean(on_lines) > 0.8
    edges = make_pairs([clip], tmp_path / "edges", "edges", size=64, test_fraction=0, every=20)
    assert (edges.train, edges.test) == (2, 0)
    assert crop_landmarks(np.array([[15.0, 25.0]]), (10, 20, 30, 40), 64).tolist() == [[16.0, 16.0]]
    with pytest.raises(InputError, match="not an empty folder"):
        make_pairs([clip], tmp_path / "pairs")


# --- training ---------------------------------------------------------------------------------


def train_command(data: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fakelab", "pix2pix", "train", "--data", str(data), "-o", str(run), "--netG",
            "unet_128", "--ngf", "2", "--ndf", "2", "--n-epochs", "2", "--n-epochs-decay", "2", "--threads", "1",
            "--no-tensorboard", "--checkpoint-every", "1", "--save-epoch-freq", "0", *extra]  # fmt: skip


def saved_step(run: Path) -> int:
    if not (run / STATE_NAME).exists():
        return -1
    return int(torch.load(run / STATE_NAME, weights_only=True)["step"])


def same_tensors(left, right) -> bool:
    if isinstance(left, torch.Tensor):
        return torch.equal(left, right)
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same_tensors(left[k], right[k]) for k in left)
    if isinstance(left, (list, tuple)):
        return len(left) == len(right) and all(same_tensors(a, b) for a, b in zip(left, right))
    return left == right


def test_kill_9_then_resume_continues_exactly_and_a_fresh_process_loads_g(paired, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # The uninterrupted run, in this process (one thread, like the CLI runs below).
    options = Pix2PixOptions(generator="unet_128", ngf=2, ndf=2, n_epochs=2, n_epochs_decay=2)
    straight = train(paired, tmp_path / "straight", options, RunOptions(checkpoint_every=1, save_epoch_freq=0, **QUIET))
    assert (straight.step, straight.epoch) == (16, 4)
    # Killed without warning mid-run (each step slowed down so that the kill lands inside the run).
    run = tmp_path / "run"
    killed = subprocess.Popen(train_command(paired, run), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**env, "FAKELAB_PIX2PIX_STEP_DELAY": "0.4"})  # fmt: skip
    deadline = time.monotonic() + 120
    while saved_step(run) < 6 and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.1)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    step = saved_step(run)
    assert 6 <= step < 16
    resumed = subprocess.run(train_command(paired, run, "--resume"), capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {step}" in resumed.stderr
    expected = torch.load(tmp_path / "straight" / STATE_NAME, weights_only=True)
    final = torch.load(run / STATE_NAME, weights_only=True)
    assert final["step"] == 16 and same_tensors(expected, final)
    assert final["optimizer_G"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * (1 - 2 / 3))
    assert not list(run.glob(".*partial*"))
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "epoch" in r] == [1, 2, 3, 4]
    assert (run / "web" / "index.html").read_text().count("<h3>epoch") == 4
    # latest_net_G.pth is the reference's plain state_dict, and a fresh process gives the same output.
    state = torch.load(run / GENERATOR_NAME, weights_only=True)
    assert list(state) == list(build_generator("unet_128", 2).state_dict())
    assert same_tensors(state, final["net_G"])
    image = gradient_image(128, 99)
    save_image(tmp_path / "in.png", image)
    fresh = subprocess.run([sys.executable, "-m", "fakelab", "pix2pix", "predict", "--checkpoint", str(run / GENERATOR_NAME),
                            str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png")], capture_output=True, text=True)  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr
    from fakelab.video import load_image

    assert np.array_equal(load_image(tmp_path / "out.png"), Translator.load(run / GENERATOR_NAME)(image))


def test_sigterm_stops_after_the_step_with_a_checkpoint(paired, tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen(train_command(paired, run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "FAKELAB_PIX2PIX_STEP_DELAY": "0.4"})  # fmt: skip
    deadline = time.monotonic() + 120
    while saved_step(run) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr  # as a shell reports a process SIGTERM ended
    assert f"stopped at step {saved_step(run)}" in stderr and "Traceback" not in stderr


def test_in_process_training_scores_held_out_pairs(paired, tmp_path):
    result = train(paired, tmp_path / "run", Pix2PixOptions(**TINY), RunOptions(epochs=2, save_epochs=(1,), progress=False))
    assert (result.step, result.epoch) == (8, 2)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert set(result.held_out) == {"L1", "PSNR", "SSIM"} and 0 < result.held_out["L1"] < 1
    assert (tmp_path / "run" / "epoch_1_net_G.pth").is_file()
    with pytest.raises(InputError, match="already holds a run"):
        train(paired, tmp_path / "run", Pix2PixOptions(**TINY), RunOptions(**QUIET))
    result = train(paired, tmp_path / "run", run=RunOptions(epochs=3, **QUIET), resume=True)
    assert result.step == 12
    with pytest.raises(InputError, match="already trained 3 epochs"):
        train(paired, tmp_path / "run", run=RunOptions(epochs=3, **QUIET), resume=True)


# --- predict and reenactment ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("g") / "latest_net_G.pth"
    torch.save(build_generator("unet_128", 2, "instance").state_dict(), path)
    return path


def test_predict_images_folders_and_videos_with_audio(tiny_generator, media, tmp_path, paired):
    translator = Translator.load(tiny_generator)
    image = gradient_image(200, 5)
    save_image(tmp_path / "one.png", image)
    predict([tmp_path / "one.png"], tmp_path / "one-out.png", tiny_generator)
    from fakelab.video import load_image

    assert np.array_equal(load_image(tmp_path / "one-out.png"), translator(image))
    result = predict([paired / "test"], tmp_path / "folder", tiny_generator, aligned=True)
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["0.png", "1.png"]
    a, _ = PairedImages(paired, "test", 128).images(1)
    assert np.array_equal(load_image(tmp_path / "folder" / "1.png"), translator(a))
    assert result.images == 2
    clip = tmp_path / "clip.mp4"
    with VideoWriter(clip, 25, audio=media / "d12.mp4") as writer:
        for index, frame in enumerate(iter_frames(media / "d12.mp4", size=(96, 96))):
            if index == 6:
                break
            writer.write(frame)
    predict([clip], tmp_path / "clip-out.mp4", tiny_generator)
    info = probe_video(tmp_path / "clip-out.mp4")
    assert (info.width, info.height, info.frame_count) == (128, 128, 6) and has_audio(tmp_path / "clip-out.mp4")


def test_landmarks2face_moves_the_person_landmarks_and_plugs_into_animate(tiny_generator, media):
    assert "landmarks2face" in MODELS
    animator = build_animator("landmarks2face", tiny_generator)
    assert isinstance(animator, LandmarksToFaceAnimator) and animator.size == (128, 128)
    frames = [frame for _, frame in zip(range(12), iter_frames(media / "d0.mp4", size=(128, 128)))]
    source = frames[0]
    from fakelab.faces import largest_face

    source_landmarks = largest_face(source, "the source")
    sketches = list(animator.sketches(source_landmarks, frames[::3]))
    # Relative motion: the first driving frame is the initial one, so it draws the person's own layout.
    assert np.array_equal(sketches[0], landmark_sketch(source_landmarks, 128))
    assert any(not np.array_equal(sketch, sketches[0]) for sketch in sketches[1:])
    outputs = list(animator.animate(source, frames[:2]))
    assert len(outputs) == 2 and outputs[0].shape == (128, 128, 3)
    assert np.array_equal(outputs[0], animator.translator(sketches[0]))


# --- CLI errors -------------------------------------------------------------------------------


def assert_one_line_error(capsys, args, message: str) -> None:
    """The CLI in this process: an exception escaping it would fail the test with its traceback."""
    capsys.readouterr()
    code = cli([str(arg) for arg in args])
    stderr = capsys.readouterr().err
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], stderr


def test_bad_input_gives_one_line_errors_and_leaves_nothing(capsys, tmp_path, paired, tiny_generator, fixtures, media):
    not_a_checkpoint = tmp_path / "notes.pth"
    not_a_checkpoint.write_text("hello")
    before = {p: p.stat().st_mtime_ns for p in paired.rglob("*")}
    cases = [
        (("pix2pix", "train", "--data", tmp_path / "missing", "-o", tmp_path / "run"), "is not a folder of paired images"),
        (("pix2pix", "train", "--data", tmp_path, "-o", tmp_path / "run"), "neither a train/ folder"),
        (("pix2pix", "train", "--data", paired, "-o", tmp_path / "run", "--resume"), "nothing to resume"),
        (("pix2pix", "train", "--data", paired, "-o", tmp_path / "run", "--ngf", "0"), "at least 1"),
        (("pix2pix", "train", "--data", paired, "-o", tmp_path / "run", "--device", "cuda:7"), "CUDA is not available"),
        (("pix2pix", "predict", "--checkpoint", not_a_checkpoint, paired / "test" / "0.png", "-o", tmp_path / "o.png"),
         "not a readable generator checkpoint"),
        (("pix2pix", "predict", "--checkpoint", fixtures / "discriminator.pth", paired / "test" / "0.png", "-o",
          tmp_path / "o.png"), "not a pix2pix U-Net"),
        (("pix2pix", "predict", "--checkpoint", tiny_generator, tmp_path / "nope.png", "-o", tmp_path / "o.png"),
         "does not exist"),
        (("pix2pix", "predict", "--checkpoint", tiny_generator, paired / "test" / "0.png", "-o", tmp_path / "o.mp4"),
         "the input is an image"),
        (("pix2pix", "predict", "--checkpoint", tiny_generator, paired / "test" / "0.png", "-o", paired / "test" / "0.png"),
         "is one of the inputs"),
        (("pix2pix", "predict", "--checkpoint", tiny_generator, not_a_checkpoint, "-o", tmp_path / "o.png"),
         "neither an image nor a video"),
        (("pix2pix", "pairs", tmp_path / "none.mp4", "-o", tmp_path / "pairs"), "not a readable video"),
        (("pix2pix", "pairs", media / "d0.mp4", "-o", paired), "not an empty folder"),
        (("pix2pix", "pairs", media / "d0.mp4", "-o", tmp_path / "pairs", "--test-fraction", "1.5"), "test fraction"),
        (("animate", media / "s7.jpg", media / "d0.mp4", "-o", tmp_path / "a.mp4", "--model", "landmarks2face"),
         "needs a checkpoint"),
        (("animate", media / "s7.jpg", media / "d0.mp4", "-o", tmp_path / "a.mp4", "--model", "landmarks2face",
          "--checkpoint", not_a_checkpoint), "not a readable generator checkpoint"),
    ]
    for args, message in cases:
        assert_one_line_error(capsys, args, message)
    # And once through a real process: one line on stderr, no traceback.
    result = subprocess.run([sys.executable, "-m", "fakelab", "pix2pix", "predict", "--checkpoint", str(not_a_checkpoint),
                             str(paired / "test" / "0.png"), "-o", str(tmp_path / "o.png")], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"fakelab pix2pix: error: {not_a_checkpoint} is not a readable generator checkpoint")
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.pth"]
    assert {p: p.stat().st_mtime_ns for p in paired.rglob("*")} == before
