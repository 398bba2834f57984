"""`fakelab train`: the objective's parts, a short real training run, checkpoints, resume, stop, torchrun.

One module-scoped run trains a tiny 64x64 model (the vox-256 architecture at tiny
widths) for 200 steps on frames of the shared test videos; the tests that need a
trained model share it. Training runs on one CPU thread: on a busy two-core
machine that is several times faster than two.
"""

import argparse
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
import yaml

from conftest import REPO_ROOT, shared_path
from fakelab.animation.checkpoint import Checkpoint, load_networks
from fakelab.animation.config import load_config
from fakelab.animation.engine import FommAnimator
from fakelab.animation.fomm.keypoints import coordinate_grid
from fakelab.animation.motion import MotionTransfer
from fakelab.animation.networks import FommNetworks
from fakelab.cli import main as cli
from fakelab.datasets import FramesDataset
from fakelab.datasets.videos import resize_frame
from fakelab.errors import CheckpointError, ConfigError, InputError
from fakelab.metrics.commands import register_evaluation
from fakelab.metrics.scores import l1_error
from fakelab.training.monitor import read_log
from fakelab.training.params import TransformParams, train_params
from fakelab.training.perceptual import VGG19_TAPS, Lite0Features, Vgg19Features, perceptual_network, vgg19_features
from fakelab.training.trainer import CHECKPOINT_NAME, TrainOptions, train
from fakelab.training.warps import RandomWarp
from fakelab.video import VideoWriter, iter_frames, save_image

BASE_LR = 2e-4
# vox-256's structure (same state-dict keys) at tiny widths for 64x64 frames.
TINY_CONFIG = {
    "dataset_params": {
        "frame_shape": [64, 64, 3],
        "id_sampling": True,
        "augmentation_params": {
            "flip_param": {"horizontal_flip": True, "time_flip": True},
            "jitter_param": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.1},
        },
    },
    "model_params": {
        "common_params": {"num_kp": 5, "num_channels": 3, "estimate_jacobian": True},
        "kp_detector_params": {"temperature": 0.1, "block_expansion": 8, "max_features": 64, "scale_factor": 0.5, "num_blocks": 5},
        "generator_params": {
            "block_expansion": 8,
            "max_features": 64,
            "num_down_blocks": 2,
            "num_bottleneck_blocks": 6,
            "estimate_occlusion_map": True,
            "dense_motion_params": {"block_expansion": 8, "max_features": 64, "num_blocks": 5, "scale_factor": 0.5},
        },
        "discriminator_params": {"scales": [1], "block_expansion": 8, "max_features": 64, "num_blocks": 4, "sn": True},
    },
    "train_params": {
        "num_epochs": 100,
        "num_repeats": 4,  # 3 identities x 4 repeats / batch 4: 3 steps per epoch
        "epoch_milestones": [1000],
        "lr_generator": BASE_LR,
        "lr_discriminator": BASE_LR,
        "lr_kp_detector": BASE_LR,
        "batch_size": 4,
        "scales": [1, 0.5, 0.25, 0.125],
        "checkpoint_freq": 1,
        "transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
        "loss_weights": {
            "generator_gan": 0,
            "discriminator_gan": 1,
            "feature_matching": [10, 10, 10, 10],
            "perceptual": [10, 10, 10, 10, 10],
            "equivariance_value": 10,
            "equivariance_jacobian": 10,
        },
    },
    "animate_params": {
        "num_pairs": 4,
        "normalization_params": {"adapt_movement_scale": False, "use_relative_movement": True, "use_relative_jacobian": True},
    },
}
QUIET = dict(workers=0, progress=False, tensorboard=False)


def write_config(path: Path, **train_overrides) -> Path:
    config = json.loads(json.dumps(TINY_CONFIG))
    for key, value in train_overrides.items():
        section, _, name = key.rpartition("__")
        (config["train_params"][section] if section else config["train_params"])[name] = value
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """64x64 frames of the three shared videos (every 3rd): three training clips and one held-out test clip each."""
    root = tmp_path_factory.mktemp("dataset64")
    for name in ("d0", "d12", "d13"):
        frames = []
        for index, frame in enumerate(iter_frames(shared_path("media", f"{name}.mp4"))):
            if index % 3 == 0:
                width = frame.shape[1]
                frames.append(resize_frame(np.ascontiguousarray(frame[:width]), (64, 64)))  # top square
        held_out = max(6, len(frames) // 5)
        for clip, indices in enumerate(np.array_split(np.arange(len(frames) - held_out), 3)):
            for position, index in enumerate(indices):
                save_image(root / "train" / f"{name}#{clip}" / f"{position:04d}.png", frames[index])
        for position, frame in enumerate(frames[-held_out:]):
            save_image(root / "test" / f"{name}#test" / f"{position:04d}.png", frame)
    return root


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory, one_thread):
    """A 200-step run; returns its folder."""
    run = tmp_path_factory.mktemp("trained") / "run"
    config = write_config(run.parent / "tiny.yaml")
    options = TrainOptions(steps=200, checkpoint_every=100, image_every=100, workers=0, progress=False)
    result = train(dataset, run, config, options)
    assert result.step == 200 and not result.stopped_early
    return run


def reconstruction_l1(networks, dataset) -> float:
    """Held-out L1 by the reference protocol: first frame is the source, absolute keypoints."""
    animator = FommAnimator(networks, MotionTransfer(relative=False))
    errors = []
    for video in FramesDataset(dataset, (64, 64, 3), "test").videos:
        frames = video.read()
        errors += [l1_error(fake, real) for fake, real in zip(animator.animate(frames[0], frames), frames)]
    return float(np.mean(errors))


# --- the objective's parts ---------------------------------------------------------------


def test_warp_jacobian_matches_autograd():
    warp = RandomWarp(3, TransformParams(sigma_affine=0.1, sigma_tps=0.05, points_tps=5), torch.Generator().manual_seed(0))
    points = (torch.rand(3, 7, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1).double().requires_grad_(True)
    warped = warp(points)
    rows = [torch.autograd.grad(warped[..., axis].sum(), points, retain_graph=True)[0] for axis in (0, 1)]
    assert torch.allclose(warp.jacobian(points), torch.stack(rows, dim=-2), atol=1e-8)


def test_warped_images_show_the_original_at_the_warped_coordinates():
    """A translation by +t in coordinates moves content by -t: keypoints satisfy kp = T(kp_warped)."""
    image = torch.zeros(1, 1, 33, 33)
    image[0, 0, 10, 20] = 1.0  # x = 20, y = 10
    warp = RandomWarp(1, TransformParams(0.0, 0.0, 5))
    warp.theta = torch.tensor([[[1.0, 0.0, 0.25], [0.0, 1.0, 0.0]]])  # +0.25 = 4 pixels in x
    moved = warp.warp_images(image)[0, 0]
    assert divmod(int(moved.argmax()), 33) == (10, 16)
    grid = coordinate_grid(33, 33, image)
    assert torch.allclose(warp(grid[10, 16].view(1, 1, 2)), grid[10, 20].view(1, 1, 2))


def test_train_params_from_configs():
    vox = train_params(load_config("vox-256"))
    assert vox.adam_betas == (0.5, 0.999) and vox.steps_per_epoch(1000) == 75 * 1000 // 40
    assert [vox.lr_factor(epoch) for epoch in (0, 59, 60, 89, 90)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert train_params(load_config("vox-adv-256")).loss_weights.adversarial


def test_train_params_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="train_params has unknown key 'lr_everything'"):
        train_params(load_config(write_config(tmp_path / "bad.yaml", lr_everything=1)))
    betas = train_params(load_config(write_config(tmp_path / "betas.yaml", adam_betas=[0.75, 0.999])))
    assert betas.adam_betas == (0.75, 0.999)


def test_perceptual_networks_load_their_weights(tmp_path):
    lite0 = perceptual_network()
    assert isinstance(lite0, Lite0Features) and not any(p.requires_grad for p in lite0.parameters())
    features = lite0(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in features] == [(32, 32, 32), (16, 32, 32), (24, 16, 16), (40, 8, 8), (112, 4, 4)]
    # VGG19 from a file in torchvision's layout (random weights here: the real file is the user's).
    state = {f"features.{key}": value for key, value in Vgg19Features().features.state_dict().items()}
    torch.save(state, tmp_path / "vgg19.pth")
    vgg = vgg19_features(tmp_path / "vgg19.pth")
    assert len(vgg(torch.rand(1, 3, 32, 32))) == len(VGG19_TAPS)
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match="not a VGG19 state dict"):
        vgg19_features(tmp_path / "wrong.pth")


# --- a real run ---------------------------------------------------------------------------


def test_training_lowers_held_out_reconstruction_l1(trained, dataset):
    config = load_config(trained / "config.yaml")
    torch.manual_seed(0)  # the run's seed: the same initial weights
    untrained = reconstruction_l1(FommNetworks(config).eval(), dataset)
    after = reconstruction_l1(load_networks(config, trained / CHECKPOINT_NAME), dataset)
    print(f"held-out L1: untrained {untrained:.4f}, after 200 steps {after:.4f}")
    assert after <= 0.7 * untrained


def test_run_logs_losses_pictures_and_tensorboard(trained):
    records = read_log(trained)
    assert [record["step"] for record in records] == list(range(10, 201, 10))
    assert {"perceptual", "equivariance_value", "equivariance_jacobian", "lr_generator"} <= set(records[0])
    assert records[-1]["perceptual"] < records[0]["perceptual"]
    assert sorted(p.name for p in (trained / "visualization").iterdir()) == ["step-00000100.png", "step-00000200.png"]
    assert list((trained / "tensorboard").glob("events.out.tfevents.*"))


def test_checkpoint_has_the_official_layout_and_animates(trained, tmp_path, capsys):
    content = torch.load(trained / CHECKPOINT_NAME, weights_only=True)
    assert set(content) == {
        "generator", "kp_detector", "discriminator",
        "optimizer_generator", "optimizer_kp_detector", "optimizer_discriminator",
        "epoch", "step", "train_state",
    }  # fmt: skip
    assert content["step"] == 200 and content["epoch"] == 200 // 3
    official = {}
    section = None
    for line in shared_path("fixtures", "fomm", "vox-256.state_dict.txt").read_text().splitlines():
        if line.startswith("== "):
            section = {"KPDetector": "kp_detector", "OcclusionAwareGenerator": "generator"}.get(line.split()[1].rstrip(":"))
        elif line.startswith("   ") and section:
            official.setdefault(section, set()).add(line.split()[0])
    assert set(content["kp_detector"]) == official["kp_detector"]
    assert set(content["generator"]) == official["generator"]

    frames = [frame for _, frame in zip(range(6), iter_frames(shared_path("media", "d12.mp4"), size=(64, 64)))]
    save_image(tmp_path / "source.png", frames[0])
    with VideoWriter(tmp_path / "driving.mp4", fps=25) as writer:
        for frame in frames:
            writer.write(frame)
    out = tmp_path / "animated.mp4"
    args = ["animate", str(tmp_path / "source.png"), str(tmp_path / "driving.mp4"), "-o", str(out)]
    assert cli([*args, "--checkpoint", str(trained / CHECKPOINT_NAME), "--config", str(trained / "config.yaml")]) == 0
    animated = list(iter_frames(out))
    assert len(animated) == 6 and animated[0].shape == (64, 64, 3)


def evaluate_command(argv: list[str]) -> None:
    """`fakelab evaluate KIND ...`, parsed as fakelab.evaluate_commands builds the `evaluate` parser."""
    parser = argparse.ArgumentParser(prog="fakelab evaluate")
    register_evaluation(parser.add_subparsers(dest="kind", required=True))
    args = parser.parse_args(argv)
    args.handler(args)


def test_evaluate_prints_scores_for_the_trained_model_and_landmark_warp(trained, dataset, tmp_path, capsys):
    out = tmp_path / "scores.json"
    args = ["reconstruction", "--data", str(dataset), "--config", str(trained / "config.yaml")]
    args += ["--checkpoint", str(trained / CHECKPOINT_NAME), "--model", "fomm", "--model", "landmark-warp"]
    evaluate_command([*args, "--max-frames", "8", "-o", str(out)])
    table = capsys.readouterr().out
    print(table)
    assert "| model | protocol | clips | frames | L1 | AKD (px @256) | MKR | AED (L2) | AED (squared L2) |" in table
    results = {entry["model"]: entry for entry in json.loads(out.read_text())}
    frames = sum(min(8, len(video.read())) for video in FramesDataset(dataset, (64, 64, 3), "test").videos)
    for model in ("fomm", "landmark-warp"):
        assert f"| {model} | reconstruction | 3 | {frames} |" in table
        assert results[model]["frames"] == frames
        assert 0 < results[model]["scores"]["l1"] < 0.2
        # dlib finds faces in some generated frames (about half, for the tiny model): every score has a value.
        assert results[model]["scores"]["mkr"] < 1
        assert all(results[model]["scores"][name] > 0 for name in ("akd", "aed", "aed_squared"))


# --- resume, stop, kill, torchrun ---------------------------------------------------------


def same_state(first: dict, second: dict) -> bool:
    if isinstance(first, dict):
        return first.keys() == second.keys() and all(same_state(first[k], second[k]) for k in first)
    if isinstance(first, (list, tuple)):
        return len(first) == len(second) and all(same_state(a, b) for a, b in zip(first, second))
    if isinstance(first, torch.Tensor):
        return torch.equal(first, second)
    return first == second


def test_resume_continues_exactly_as_an_uninterrupted_run(dataset, tmp_path, one_thread):
    # 3 identities x 4 repeats / batch 2: 6 steps per epoch; the LR drops tenfold from step 7 on.
    config = write_config(tmp_path / "tiny.yaml", batch_size=2, epoch_milestones=[1])
    train(dataset, tmp_path / "straight", config, TrainOptions(steps=8, **QUIET))
    train(dataset, tmp_path / "resumed", config, TrainOptions(steps=3, **QUIET))
    with pytest.raises(InputError, match="already holds a run: pass --resume"):
        train(dataset, tmp_path / "resumed", config, TrainOptions(steps=8, **QUIET))
    result = train(dataset, tmp_path / "resumed", None, TrainOptions(steps=8, **QUIET), resume=True)
    assert result.step == 8
    straight = torch.load(tmp_path / "straight" / CHECKPOINT_NAME, weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / CHECKPOINT_NAME, weights_only=True)
    assert same_state(straight, resumed)
    assert resumed["optimizer_generator"]["param_groups"][0]["lr"] == pytest.approx(0.1 * BASE_LR)
    with pytest.raises(InputError, match="already at step 8"):
        train(dataset, tmp_path / "resumed", None, TrainOptions(steps=8, **QUIET), resume=True)


def train_command(dataset, run, *extra):
    return [sys.executable, "-m", "fakelab", "train", "--data", str(dataset), "-o", str(run), "--threads", "1",
            "--workers", "0", "--no-tensorboard", "--log-every", "1", *extra]  # fmt: skip


def wait_for_checkpoint(run: Path, process: subprocess.Popen, at_least: int, timeout: float = 240) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"training exited early:\n{process.stderr.read()}")
        if (run / CHECKPOINT_NAME).exists():
            step = Checkpoint.read(run / CHECKPOINT_NAME).extra["step"]
            if step >= at_least:
                return step
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"no checkpoint at step {at_least} within {timeout} s")


def expected_lr(step: int, steps_per_epoch: int = 3, milestone: int = 2) -> float:
    """The LR a step trains with: tenfold lower from the milestone epoch on."""
    return BASE_LR * (0.1 if (step - 1) // steps_per_epoch >= milestone else 1.0)


def test_kill_9_then_resume_and_ctrl_c(dataset, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", epoch_milestones=[2])
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # 1. Killed without warning in the middle of training (checkpoints every 2 steps).
    killed = subprocess.Popen(
        train_command(dataset, run, "--config", str(config), "--steps", "1000", "--checkpoint-every", "2"),
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    wait_for_checkpoint(run, killed, at_least=8)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    saved = Checkpoint.read(run / CHECKPOINT_NAME)  # whole, whatever the moment of the kill
    step = saved.extra["step"]
    assert step >= 8 and step % 2 == 0
    # 2. Resumed: same step, same LR schedule (past the milestone at step 6), no partial files left.
    resumed = subprocess.run(
        train_command(dataset, run, "--resume", "--steps", str(step + 3)), capture_output=True, text=True, env=env
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {step}:" in resumed.stderr
    final = torch.load(run / CHECKPOINT_NAME, weights_only=True)
    assert final["step"] == step + 3
    assert final["optimizer_generator"]["param_groups"][0]["lr"] == pytest.approx(expected_lr(step + 3))
    records = read_log(run)
    assert [record["step"] for record in records] == list(range(1, step + 4))
    assert all(record["lr_generator"] == pytest.approx(expected_lr(record["step"])) for record in records)
    assert sorted(p.name for p in run.iterdir() if p.is_file()) == [CHECKPOINT_NAME, "config.yaml", "log.jsonl"]
    # 3. Ctrl-C, SIGTERM and SIGHUP (a closed terminal): the step in progress finishes, a checkpoint is
    # written, the exit status (128 + signal) says which.
    stopped_at = step
    for sig, more_steps in ((signal.SIGINT, 5), (signal.SIGTERM, 1), (signal.SIGHUP, 1)):
        before = stopped_at
        stopped = subprocess.Popen(
            train_command(dataset, run, "--resume", "--steps", "1000", "--checkpoint-every", "1000"),
            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 240
        while len(read_log(run)) < before + more_steps and time.monotonic() < deadline and stopped.poll() is None:
            time.sleep(0.2)
        stopped.send_signal(sig)
        _, stderr = stopped.communicate(timeout=120)
        assert stopped.returncode == 128 + sig, stderr
        stopped_at = torch.load(run / CHECKPOINT_NAME, weights_only=True)["step"]
        assert stopped_at >= before + more_steps and f"stopped at step {stopped_at} of 1000" in stderr
        assert read_log(run)[-1]["step"] == stopped_at
        assert not list(run.glob(".*partial*"))


def test_torchrun_world_size_one_matches_a_single_process(dataset, tmp_path, one_thread):
    config = write_config(tmp_path / "tiny.yaml", batch_size=2)
    train(dataset, tmp_path / "single", config, TrainOptions(steps=2, **QUIET))
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "fakelab",
         *train_command(dataset, tmp_path / "ddp", "--config", str(config), "--steps", "2")[3:]],
        capture_output=True, text=True, cwd=REPO_ROOT,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "1 process(es)" in launched.stderr
    single = torch.load(tmp_path / "single" / CHECKPOINT_NAME, weights_only=True)
    ddp = torch.load(tmp_path / "ddp" / CHECKPOINT_NAME, weights_only=True)
    assert not any(key.startswith("module.") for key in ddp["generator"])
    for network in ("kp_detector", "generator"):
        for key, value in single[network].items():
            assert torch.allclose(value.float(), ddp[network][key].float(), atol=1e-6), (network, key)


def test_adversarial_configs_train_the_discriminator(dataset, tmp_path, one_thread):
    config = write_config(tmp_path / "adv.yaml", batch_size=2, loss_weights__generator_gan=1)
    raw = yaml.safe_load(config.read_text())
    raw["model_params"]["discriminator_params"]["use_kp"] = True
    config.write_text(yaml.safe_dump(raw))
    result = train(dataset, tmp_path / "adv", config, TrainOptions(steps=2, log_every=1, **QUIET))
    assert {"generator_gan", "feature_matching", "discriminator_gan"} <= set(result.losses)
    torch.manual_seed(0)
    initial = FommNetworks(load_config(config), with_discriminator=True).discriminator.state_dict()
    trained_discriminator = Checkpoint.read(tmp_path / "adv" / CHECKPOINT_NAME).states["discriminator"]
    changed = [key for key, value in initial.items() if not torch.equal(value, trained_discriminator[key])]
    assert any(key.endswith("weight_orig") for key in changed)


def test_train_speed_bench_reports_steps_per_second(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", batch_size=2)
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "train_speed.py"), "--config", str(config), "--steps", "2",
         "--warmup", "1", "--threads", "1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["steps_per_second"] > 0 and report["batch_size"] == 2 and report["perceptual"] == "EfficientNet-Lite0"
