"""Configs and checkpoints: official layouts, conversions, and refusals that name the problem."""

import os
import pickle
import re

import numpy as np
import pytest
import torch

from fakelab.animation.checkpoint import Checkpoint, convert_checkpoint, load_networks
from fakelab.animation.config import bundled_config_names, load_config
from fakelab.animation.engine import FommAnimator
from fakelab.animation.networks import FommNetworks
from fakelab.errors import CheckpointError, ConfigError

OFFICIAL = ["bair-256", "fashion-256", "mgif-256", "nemo-256", "taichi-256", "taichi-adv-256", "vox-256", "vox-adv-256"]
SECTION_NAMES = {"KPDetector": "kp_detector", "OcclusionAwareGenerator": "generator", "MultiScaleDiscriminator": "discriminator"}


def read_official_layout(path):
    """{network: ({key: (shape, dtype)}, params)} from the fixture's state_dict listing."""
    layout, current = {}, None
    for line in path.read_text().splitlines():
        header = re.match(r"== (\w+): \d+ state_dict entries, (\d+) params", line)
        if header:
            current = SECTION_NAMES[header.group(1)]
            layout.setdefault(current, ({}, int(header.group(2))))
        elif line.startswith("   ") and current:
            key, rest = line.strip().split(" ", 1)
            shape, dtype = rest.rsplit(" ", 1)
            layout[current][0][key] = (tuple(int(d) for d in re.findall(r"\d+", shape)), dtype)
        else:
            current = None
    return layout


def test_vox_256_has_the_official_state_dict_layout(fomm_fixtures):
    official = read_official_layout(fomm_fixtures / "vox-256.state_dict.txt")
    networks = FommNetworks(load_config("vox-256"), with_discriminator=True)
    assert set(official) == set(networks.present())
    for name, module in networks.present().items():
        keys, params = official[name]
        ours = {key: (tuple(t.shape), str(t.dtype).removeprefix("torch.")) for key, t in module.state_dict().items()}
        assert ours == keys, name
        assert sum(p.numel() for p in module.parameters()) == params, name


def test_all_official_configs_are_bundled_and_build():
    assert bundled_config_names() == OFFICIAL
    for name in OFFICIAL:
        config = load_config(name)
        assert config.image_size == (256, 256)
        networks = FommNetworks(config, with_discriminator=True)
        jacobian_maps = networks.kp_detector.jacobian.out_channels // 4
        assert jacobian_maps == (1 if name.startswith("mgif") else 10), name
        assert networks.discriminator.discs["1"].use_kp == ("adv" in name), name


def test_config_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="unknown config 'vox-512'.*vox-256"):
        load_config("vox-512")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_params:\n  common_params: {num_kp: 10, num_kps: 3}\n")
    with pytest.raises(ConfigError, match="unknown key 'num_kps'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def predictions(networks, fixtures):
    ref = np.load(fixtures / "tiny-vox-io.npz")
    source = torch.from_numpy(ref["source"]).permute(2, 0, 1)[None]
    driving = torch.from_numpy(ref["driving"]).permute(0, 3, 1, 2)
    return next(FommAnimator(networks).animate_tensors(source, [driving]))["prediction"]


def test_dataparallel_prefix_and_safetensors_round_trip(fomm_fixtures, tmp_path):
    config = load_config(fomm_fixtures / "tiny-vox.yaml")
    original = torch.load(fomm_fixtures / "tiny-vox-cpk.pth.tar", weights_only=True)
    prefixed = {name: {f"module.{k}": v for k, v in original[name].items()} for name in ("generator", "kp_detector")}
    torch.save({**prefixed, "epoch": 7}, tmp_path / "parallel.pth.tar")

    converted = tmp_path / "tiny.safetensors"
    convert_checkpoint(tmp_path / "parallel.pth.tar", converted)
    assert Checkpoint.read(converted).epoch == 7
    expected = predictions(load_networks(config, fomm_fixtures / "tiny-vox-cpk.pth.tar"), fomm_fixtures)
    assert torch.equal(predictions(load_networks(config, converted), fomm_fixtures), expected)

    back = tmp_path / "back.pth.tar"
    convert_checkpoint(converted, back)
    assert torch.equal(predictions(load_networks(config, back), fomm_fixtures), expected)


def edited_checkpoint(fixtures, tmp_path, edit):
    state = torch.load(fixtures / "tiny-vox-cpk.pth.tar", weights_only=True)
    edit(state)
    path = tmp_path / "edited.pth.tar"
    torch.save(state, path)
    return path


def test_missing_key_is_named(fomm_fixtures, tmp_path):
    path = edited_checkpoint(fomm_fixtures, tmp_path, lambda s: s["generator"].pop("first.conv.weight"))
    with pytest.raises(CheckpointError, match=r"generator is missing key 'first.conv.weight'") as error:
        load_networks(load_config(fomm_fixtures / "tiny-vox.yaml"), path)
    assert "\n" not in str(error.value)


def test_wrong_config_names_first_mismatched_shape(fomm_fixtures):
    with pytest.raises(CheckpointError, match=r"kp_detector key 'jacobian.weight' has shape \(20, .*expects \(4, "):
        load_networks(load_config(fomm_fixtures / "tiny-mgif.yaml"), fomm_fixtures / "tiny-vox-cpk.pth.tar")


def test_unexpected_key_is_named(fomm_fixtures):
    with pytest.raises(CheckpointError, match=r"unexpected key 'jacobian.weight'"):
        load_networks(load_config(fomm_fixtures / "tiny-zeroth.yaml"), fomm_fixtures / "tiny-vox-cpk.pth.tar")


class Payload:
    """Unpickling this would create a marker file: the attack a weights file must not carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["zip", "legacy", "raw-pickle"])
def test_code_running_pickle_is_refused_and_runs_nothing(tmp_path, writer):
    marker = tmp_path / "pwned"
    content = {"generator": {"w": torch.zeros(1)}, "kp_detector": Payload(marker)}
    path = tmp_path / "evil.pth.tar"
    if writer == "raw-pickle":
        path.write_bytes(pickle.dumps(content))
    else:
        torch.save(content, path, _use_new_zipfile_serialization=writer == "zip")
    with pytest.raises(CheckpointError) as error:
        Checkpoint.read(path)
    assert "evil.pth.tar" in str(error.value) and "\n" not in str(error.value)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.pth.tar"
    text.write_text("these are my notes, not weights")
    with pytest.raises(CheckpointError, match="notes.pth.tar is not a PyTorch checkpoint"):
        Checkpoint.read(text)
    fake_safetensors = tmp_path / "weights.safetensors"
    fake_safetensors.write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="weights.safetensors is not a safetensors file"):
        Checkpoint.read(fake_safetensors)
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a FOMM checkpoint"):
        Checkpoint.read(tmp_path / "other.pth")
