"""Detector training: class balance, splits by video, the triplet loss, and a short
`fakelab train-detector` run that is resumed and matches an uninterrupted run."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fakelab.cli import main
from fakelab.detection.checkpoint import load_detector
from fakelab.detection.train import (
    FAKE,
    REAL,
    FaceSample,
    TrainingConfig,
    balanced_epoch,
    batch_hard_triplet_loss,
    class_items,
    split_by_group,
    state_path,
    train_detector,
)
from fakelab.detection.registry import ARCHITECTURES
from fakelab.errors import ConfigError, InputError
from test_detect_pipeline import TinyDetector


def samples(groups: dict[str, tuple[int, int]]) -> list[FaceSample]:
    """`count` blank samples of `label` for each group name."""
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    return [FaceSample(image, None, label, name) for name, (label, count) in groups.items() for _ in range(count)]


def test_validation_holds_out_whole_groups_of_each_class():
    data = samples({f"real{i}": (REAL, 3) for i in range(5)} | {f"fake{i}": (FAKE, 2) for i in range(5)})
    train, val = split_by_group(data, val_fraction=0.4, seed=0)
    assert sorted(train + val) == list(range(len(data)))
    val_groups = {data[i].group for i in val}
    assert not val_groups & {data[i].group for i in train}
    assert sum(g.startswith("real") for g in val_groups) == 2 and sum(g.startswith("fake") for g in val_groups) == 2
    assert split_by_group(data, 0.4, seed=0) == (train, val)


def test_one_video_per_class_cannot_be_validated():
    with pytest.raises(InputError, match="one video or folder only"):
        split_by_group(samples({"a": (REAL, 4), "b": (FAKE, 2), "c": (FAKE, 2)}), 0.2, seed=0)


def test_epochs_are_class_balanced_and_self_blends_pair_each_real():
    data = samples({"r": (REAL, 3), "f": (FAKE, 10)})
    reals, fakes = class_items(data, range(len(data)), pseudo_fakes=True)
    assert len(reals) == 3 and len(fakes) == 13
    assert sum(item.self_blended for item in fakes) == 3
    epoch = balanced_epoch(reals, fakes, np.random.default_rng(0))
    labels = [FAKE if item.self_blended else data[item.sample].label for item in epoch]
    assert labels.count(REAL) == labels.count(FAKE) == 13
    # The 3 reals are repeated in whole shuffled rounds: each 4 or 5 times.
    counts = np.bincount([item.sample for item in epoch if not item.self_blended and data[item.sample].label == REAL])
    assert set(counts.tolist()) <= {4, 5}
    assert len({item for item in epoch if item in fakes}) == 13


def test_batch_hard_triplet_loss_by_hand():
    labels = torch.tensor([0, 0, 1, 1])
    separated = torch.tensor([[1.0, 0], [1.0, 0.01], [0, 1.0], [0.01, 1.0]])
    assert batch_hard_triplet_loss(separated, labels, margin=0.2) == 0
    # All on one line: positives and negatives at the same distance, so the loss is the margin.
    collapsed = torch.ones(4, 2)
    assert batch_hard_triplet_loss(collapsed, labels, margin=0.2) == pytest.approx(0.2)
    # No anchor has both a positive and a negative in the batch.
    assert batch_hard_triplet_loss(separated[:2], labels[:2], margin=0.2) == 0


def test_bad_training_requests_are_clear(tmp_path):
    with pytest.raises(InputError, match="--pseudo-fakes self-blend"):
        train_detector(tmp_path, None, tmp_path / "d.pt")
    with pytest.raises(ConfigError, match="unknown pseudo-fake method 'mixup'"):
        train_detector(tmp_path, None, tmp_path / "d.pt", TrainingConfig(pseudo_fakes="mixup"))
    state_path(tmp_path / "d.pt").write_bytes(b"")
    with pytest.raises(InputError, match="already exists .* resume it"):
        train_detector(tmp_path, None, tmp_path / "d.pt", TrainingConfig(pseudo_fakes="self-blend"))


@pytest.fixture(scope="module")
def real_videos(tmp_path_factory) -> Path:
    from conftest import shared_path

    folder = tmp_path_factory.mktemp("real")
    for name in ("d0.mp4", "d12.mp4"):
        shutil.copy(shared_path("media", name), folder / name)
    return folder


def test_short_run_resumes_into_the_same_detector(capsys, monkeypatch, real_videos, tmp_path):
    # A detector of a few hundred weights keeps this fast; the data path is the real one.
    monkeypatch.setitem(ARCHITECTURES, "tiny", TinyDetector)
    common = ["--real", real_videos, "--arch", "tiny", "--pseudo-fakes", "self-blend", "--frames-per-video", "2",
              "--batch-size", "2", "--val-fraction", "0.5", "--triplet"]  # fmt: skip
    interrupted = tmp_path / "interrupted.safetensors"
    assert main([str(a) for a in ["train-detector", *common, "-o", interrupted, "--epochs", "1"]]) == 0
    first = capsys.readouterr().out
    assert "training tiny on 2 real and 2 fake faces (self-blended pseudo-fakes included)" in first
    assert "epoch 1/1: train loss" in first and "validation AUC" in first
    assert interrupted.is_file() and state_path(interrupted).is_file()

    assert main([str(a) for a in ["train-detector", *common, "-o", interrupted, "--epochs", "2", "--resume"]]) == 0
    resumed = capsys.readouterr().out
    assert "resuming after epoch 1" in resumed and "epoch 2/2" in resumed and "epoch 1/" not in resumed

    straight = tmp_path / "straight.safetensors"
    result = train_detector(
        real_videos,
        None,
        straight,
        TrainingConfig(
            arch="tiny", pseudo_fakes="self-blend", frames_per_video=2, batch_size=2, val_fraction=0.5, triplet=True, epochs=2
        ),
        log=lambda line: None,
    )
    assert len(result.history) == 2
    a = torch.load(state_path(interrupted), weights_only=True)
    b = torch.load(state_path(straight), weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    assert [r["val_auc"] for r in a["history"]] == [r["val_auc"] for r in b["history"]]
    for key, tensor in b["model"].items():
        torch.testing.assert_close(a["model"][key], tensor, rtol=0, atol=0, msg=key)
    assert load_detector(interrupted).arch == "tiny"


def test_adversarial_training_picks_the_epoch_that_best_resists_attacks(capsys, monkeypatch, real_videos, tmp_path):
    monkeypatch.setitem(ARCHITECTURES, "tiny", TinyDetector)
    output = tmp_path / "robust.safetensors"
    arguments = ["train-detector", "--real", real_videos, "--arch", "tiny", "--pseudo-fakes", "self-blend",
                 "--frames-per-video", "2", "--batch-size", "2", "--val-fraction", "0.5", "--epochs", "2",
                 "--adversarial", "pgd", "-o", output]  # fmt: skip
    assert main([str(a) for a in arguments]) == 0
    printed = capsys.readouterr().out
    assert "under attack" in printed and "best validation AUC under attack" in printed
    history = torch.load(state_path(output), weights_only=True)["history"]
    attacked = [record["val_attacked_auc"] for record in history]
    assert len(attacked) == 2 and all(a <= r["val_auc"] for a, r in zip(attacked, history))
    state = torch.load(state_path(output), weights_only=True)
    assert state["best_auc"] == max(attacked) and state["best_epoch"] == 1 + attacked.index(max(attacked))
