"""Hostile input to every command: each case must fail in one line, change nothing, write nothing.

A case is one line of CASES: (command line, part of the expected message, exit code).
Placeholders name files of the module's `Workspace` (see `build_workspace`); to add a
case, add a line (and, if it needs a new bad file, one line in `build_workspace`).
Exit code 2 is a usage error (argparse: bad option value), 1 any other refused input.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file

from badinput import assert_fails_cleanly
from conftest import SHARED, shared_path


@dataclass
class Workspace:
    root: Path
    media: Path
    places: dict[str, str]


class RunsCode:
    """A pickle payload that would create a file if it were ever unpickled as code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _fomm_variants(folder: Path, marker: Path) -> None:
    good = {"generator": {"w": torch.ones(2, 2)}, "kp_detector": {"w": torch.ones(2)}}
    variants = {
        "nontensor": {"generator": {"w": [1.0, 2.0]}, "kp_detector": {"w": torch.ones(2)}},
        "int": {"generator": {"w": torch.ones(2, dtype=torch.int32)}, "kp_detector": {"w": torch.ones(2)}},
        "bool": {"generator": {"w": torch.ones(2, dtype=torch.bool)}, "kp_detector": {"w": torch.ones(2)}},
        "nan": {"generator": {"w": torch.full((2,), float("nan"))}, "kp_detector": {"w": torch.ones(2)}},
        "inf": {"generator": {"w": torch.full((2,), float("inf"))}, "kp_detector": {"w": torch.ones(2)}},
        "epoch": {**good, "epoch": "seven"},
        "negepoch": {**good, "epoch": -4},
        "stride0": {"generator": {"w": torch.ones(1).expand(200_000_000)}, "kp_detector": {"w": torch.ones(2)}},
        "intkey": {"generator": {3: torch.ones(2)}, "kp_detector": {"w": torch.ones(2)}},
        "state-not-dict": {"generator": torch.ones(3), "kp_detector": {"w": torch.ones(2)}},
        "list": [torch.ones(2)],
        "nonets": {"weights": {"w": torch.ones(2)}},
    }
    for name, content in variants.items():
        torch.save(content, folder / f"{name}.pth.tar")
    torch.save({**good, "kp_detector": RunsCode(marker)}, folder / "code.pth.tar")
    (folder / "rawcode.pth.tar").write_bytes(pickle.dumps(RunsCode(marker)))
    script = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(script, str(folder / "script.pth.tar"))
    (folder / "garbage.pth.tar").write_bytes(bytes(range(256)) * 40)
    (folder / "empty.pth.tar").write_bytes(b"")
    (folder / "text.pth.tar").write_text("these are my notes, not weights\n")
    save_file({"generator.w": torch.full((2,), float("nan")), "kp_detector.w": torch.ones(2)}, folder / "nan.safetensors")
    save_file({"generator.w": torch.ones(2), "kp_detector.w": torch.ones(2)}, folder / "epoch.safetensors",
              metadata={"epoch": "seven"})
    (folder / "garbage.safetensors").write_bytes(b"\xff" * 64)
    # Detector checkpoints (state_dicts, maybe nested).
    torch.save({"arch": "xception", "state_dict": {"w": torch.full((2,), float("nan"))}}, folder / "det-nan.pt")
    torch.save({"w": torch.ones(2, dtype=torch.int64)}, folder / "det-int.pt")
    torch.save({"w": torch.ones(1).expand(100_000_000)}, folder / "det-stride0.pt")
    torch.save({"w": RunsCode(marker)}, folder / "det-code.pt")
    torch.save({"w": torch.ones(2)}, folder / "det.pt")


def _config_variants(folder: Path) -> None:
    base = yaml.safe_load(shared_path("fixtures", "fomm", "tiny-vox.yaml").read_text())

    def variant(name: str, edit) -> None:
        raw = yaml.safe_load(yaml.safe_dump(base))
        edit(raw)
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw))

    common = lambda raw: raw["model_params"]["common_params"]  # noqa: E731
    variant("kp-five", lambda raw: common(raw).update(num_kp="five"))
    variant("kp-neg", lambda raw: common(raw).update(num_kp=-3))
    variant("kp-float", lambda raw: common(raw).update(num_kp=5.5))
    variant("kp-bool", lambda raw: common(raw).update(num_kp=True))
    variant("kp-huge", lambda raw: common(raw).update(num_kp=100000))
    variant("jacobian-text", lambda raw: common(raw).update(estimate_jacobian="yes please"))
    variant("shape-zero", lambda raw: raw["dataset_params"].update(frame_shape=[0, 0, 3]))
    variant("shape-neg", lambda raw: raw["dataset_params"].update(frame_shape=[-128, 128, 3]))
    variant("shape-huge", lambda raw: raw["dataset_params"].update(frame_shape=[60000, 60000, 3]))
    variant("shape-short", lambda raw: raw["dataset_params"].update(frame_shape=[128]))
    variant("shape-text", lambda raw: raw["dataset_params"].update(frame_shape="big"))
    variant("shape-channels", lambda raw: raw["dataset_params"].update(frame_shape=[128, 128, 7]))
    variant("features-huge", lambda raw: raw["model_params"]["kp_detector_params"].update(max_features=60000))
    variant("temperature-neg", lambda raw: raw["model_params"]["kp_detector_params"].update(temperature=-0.1))
    variant("scale-big", lambda raw: raw["model_params"]["kp_detector_params"].update(scale_factor=4))
    variant("blocks-zero", lambda raw: raw["model_params"]["kp_detector_params"].update(num_blocks=0))
    variant("unknown-key", lambda raw: raw["model_params"]["kp_detector_params"].update(sharpness=3))
    variant("empty-model", lambda raw: raw.update(model_params=None))
    variant("empty-common", lambda raw: raw["model_params"].update(common_params=None))
    variant("model-list", lambda raw: raw.update(model_params=[1, 2]))
    variant("dataset-list", lambda raw: raw.update(dataset_params=[1, 2]))
    variant("no-model", lambda raw: raw.pop("model_params"))
    variant("scales-text", lambda raw: raw["model_params"]["discriminator_params"].update(scales=["one"]))
    variant("batch-zero", lambda raw: raw["train_params"].update(batch_size=0))
    variant("epochs-text", lambda raw: raw["train_params"].update(num_epochs="many"))
    variant("lr-nan", lambda raw: raw["train_params"].update(lr_generator=float("nan")))
    variant("train-empty", lambda raw: raw.update(train_params=None))
    text = shared_path("fixtures", "fomm", "tiny-vox.yaml").read_text()
    (folder / "nan-temperature.yaml").write_text(text.replace("temperature: 0.1", "temperature: .nan"))
    (folder / "intkeys.yaml").write_text(text.replace("model_params:", "model_params:\n  7: 8", 1))
    (folder / "toplevel-intkey.yaml").write_text(text + "\n12: 13\n")
    levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for index, name in enumerate("bcdefghi"):
        previous = "abcdefghi"[index]
        levels.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    (folder / "bomb.yaml").write_text(text + "\n" + "\n".join(levels) + "\n")
    (folder / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (folder / "notutf8.yaml").write_bytes(b"model_params: \xff\xfe\n")
    (folder / "empty.yaml").write_text("")
    (folder / "list.yaml").write_text("- 1\n- 2\n")
    (folder / "deep.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    (folder / "huge.yaml").write_text("# padding\n" * 200_000)
    (folder / "broken.yaml").write_text("model_params: {common_params: [\n")


def build_workspace(root: Path) -> Workspace:
    for name in ("out", "ck", "cfg", "img", "vid", "special", "existing", "real", "fake", "data/train", "data/test",
                 "run", "sidein"):
        (root / name).mkdir(parents=True)
    marker = root.parent / "code-ran"  # outside the workspace: a run payload would show up here
    _fomm_variants(root / "ck", marker)
    _config_variants(root / "cfg")
    img = root / "img"
    Image.new("L", (12000, 12000)).save(img / "big.png")
    (img / "empty.jpg").write_bytes(b"")
    (img / "text.jpg").write_text("not an image\n")
    (img / "truncated.jpg").write_bytes(shared_path("media", "s0.jpg").read_bytes()[:3000])
    Image.new("RGB", (1, 1)).save(img / "tiny.png")
    (root / "vid" / "garbage.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (root / "vid" / "empty.mp4").write_bytes(b"")
    special = root / "special"
    os.mkfifo(special / "fifo.mp4")
    os.mkfifo(special / "fifo.jpg")
    (special / "dir.mp4").mkdir()
    (special / "dir.html").mkdir()
    (special / "dir.pt").mkdir()
    (special / "dir.safetensors").mkdir()
    (special / "dir.json").mkdir()
    (special / "afile").write_text("a file, not a folder\n")
    os.symlink(special / "loop2", special / "loop1")
    os.symlink(special / "loop1", special / "loop2")
    os.symlink(special / "loop-a.mp4", special / "loop-b.mp4")
    os.symlink(special / "loop-b.mp4", special / "loop-a.mp4")
    os.symlink(special / "nowhere.mp4", special / "broken.mp4")
    os.symlink(shared_path("media", "d0.mp4"), special / "link-to-d0.mp4")
    os.symlink(shared_path("fixtures", "fomm", "tiny-vox-cpk.pth.tar"), special / "link-to-ck.safetensors")
    existing = root / "existing"
    (existing / "crop.boxes.json").write_text("{}")  # a side file whose main output does not exist
    (existing / "demo-driving.mp4").write_bytes(b"someone else's video")
    (existing / "att.report.md").write_text("my notes")
    (existing / "tr.pt.state.pt").write_bytes(b"my file")
    (root / "sidein" / "v.report.json").write_text("{}")  # an input named like a side output
    torch.save({"generator": {"w": torch.ones(2)}, "kp_detector": {"w": torch.ones(2)}}, root / "run" / "checkpoint.pth.tar")
    (root / "pairs.csv").write_text("source,driving\nnope.mp4,nada.mp4\n")
    (root / "pairs-short.csv").write_text("source,driving\nclip\n")
    from fakelab.video import VideoWriter

    for folder in (root / "data" / "test", root / "onlytest" / "test"):
        folder.mkdir(parents=True, exist_ok=True)
        with VideoWriter(folder / "clip.mp4", 10) as writer:
            for value in range(4):
                writer.write(np.full((64, 64, 3), 60 * value, np.uint8))
    (root / "onlytest" / "train").mkdir()
    media = shared_path("media")
    fomm = shared_path("fixtures", "fomm")
    places = {
        "ws": root, "out": root / "out", "ck": fomm / "tiny-vox-cpk.pth.tar", "cfg": fomm / "tiny-vox.yaml",
        "img": media / "s0.jpg", "vid": media / "d0.mp4", "vida": media / "d12.mp4", "bad": root / "ck",
        "bcfg": root / "cfg", "bimg": root / "img", "bvid": root / "vid", "sp": root / "special",
        "ex": root / "existing", "det": root / "ck" / "det.pt", "real": root / "real", "fake": root / "fake",
        "data": root / "data", "long": "x" * 300,
    }
    return Workspace(root, SHARED, {key: str(value) for key, value in places.items()})


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return build_workspace(tmp_path_factory.mktemp("bad-inputs") / "ws")


A = "animate {img} {vid} -o {out}/a.mp4 --model landmark-warp"
AF = "animate {img} {vid} -o {out}/a.mp4 --config {cfg} --checkpoint"
AC = "animate {img} {vid} -o {out}/a.mp4 --checkpoint {ck} --config"
C = "crop {vid} -o {out}/c.mp4"
D = "detect {vid} --checkpoint {det}"
TD = "train-detector --real {real} --fake {fake} -o {out}/d.pt"
ED = "evaluate detection --real {real} --fake {fake} -o {out}/ev --checkpoint {det}"
ER = "evaluate reconstruction --data {data} --checkpoint {ck} --config {cfg}"
EA = "evaluate animation --data {data} --checkpoint {ck} --config {cfg}"
DP = "dataset prepare {vid} -o {out}/ds"
T = "train --data {data} -o {out}/run --config {cfg}"
TC = "train --data {data} -o {out}/run --config"
AT = "attack {vid} --detector {det} -o {out}/at.mp4"

CASES = [
    # --- animate: option values
    (f"{A} --best-frame -1", "--best-frame: must be at least 0", 2),
    (f"{A} --best-frame two", "--best-frame: not a whole number", 2),
    (f"{A} --batch-size 0", "--batch-size: must be at least 1", 2),
    (f"{A} --batch-size -4", "--batch-size: must be at least 1", 2),
    (f"{A} --batch-size nan", "--batch-size: not a whole number", 2),
    (f"{A} --device mps", "unsupported device 'mps'", 2),
    (f"{A} --device meta", "unsupported device 'meta'", 2),
    (f"{A} --device bogus", "unsupported device 'bogus'", 2),
    (f"{A} --device cuda:99", "cuda", 2),
    (f"{A} --crop maybe", "--crop: invalid choice", 2),
    (f"{A} --model dream", "--model: invalid choice", 2),
    ("animate {img} {vid}", "-o/--output", 2),
    # --- animate: output paths
    ("animate {img} {vid} -o {sp}/dir.mp4 --model landmark-warp", "is an existing folder", 1),
    ("animate {img} {vid} -o {vid} --model landmark-warp", "is the input", 1),
    ("animate {img} {vid} -o {sp}/link-to-d0.mp4 --model landmark-warp", "is the input", 1),
    ("animate {img} {vid} -o {ck} --config {cfg} --checkpoint {ck}", "is the input", 1),
    ("animate {img} {vid} -o {cfg} --config {cfg} --checkpoint {ck}", "is the input", 1),
    ("animate {img} {vid} -o {img} --model landmark-warp", "is the input", 1),
    ("animate {img} {vid} -o /sys/a.mp4 --model landmark-warp", "permission denied", 1),
    ("animate {img} {vid} -o {sp}/afile/a.mp4 --model landmark-warp", "is a file, not a folder", 1),
    ("animate {img} {vid} -o {out}/{long}.mp4 --model landmark-warp", "name is too long", 1),
    ("animate {img} {vid} -o {sp}/loop1/a.mp4 --model landmark-warp", "symlink loop", 1),
    ("animate {img} {vid} -o {sp}/loop-a.mp4 --model landmark-warp", "symlink loop", 1),
    ("animate {img} {vid} -o {sp}/fifo.mp4 --model landmark-warp", "FIFO", 1),
    ("animate {img} {vid} -o /dev/full --model landmark-warp", "character device", 1),
    ("animate {img} {vid} -o {out}/a.avi --model landmark-warp", "must end in", 1),
    # --- animate: inputs
    ("animate {bimg}/nope.jpg {vid} -o {out}/a.mp4 --model landmark-warp", "does not exist", 1),
    ("animate {bimg} {vid} -o {out}/a.mp4 --model landmark-warp", "is a folder, not a file", 1),
    ("animate {sp}/fifo.jpg {vid} -o {out}/a.mp4 --model landmark-warp", "FIFO", 1),
    ("animate /dev/zero {vid} -o {out}/a.mp4 --model landmark-warp", "character device", 1),
    ("animate {sp}/broken.mp4 {vid} -o {out}/a.mp4 --model landmark-warp", "broken symbolic link", 1),
    ("animate {sp}/loop-a.mp4 {vid} -o {out}/a.mp4 --model landmark-warp", "symlink loop", 1),
    ("animate {bimg}/empty.jpg {vid} -o {out}/a.mp4 --model landmark-warp", "not a readable image", 1),
    ("animate {bimg}/text.jpg {vid} -o {out}/a.mp4 --model landmark-warp", "not a readable image", 1),
    ("animate {bimg}/truncated.jpg {vid} -o {out}/a.mp4 --model landmark-warp", "not a readable image", 1),
    ("animate {bimg}/big.png {vid} -o {out}/a.mp4 --model landmark-warp", "12000x12000 pixels", 1),
    ("animate {img} {img} -o {out}/a.mp4 --model landmark-warp", "is a still image", 1),
    ("animate {img} {bimg}/tiny.png -o {out}/a.mp4 --model landmark-warp", "is a still image", 1),
    ("animate {img} {bvid}/garbage.mp4 -o {out}/a.mp4 --model landmark-warp", "not a readable video", 1),
    ("animate {img} {bvid}/empty.mp4 -o {out}/a.mp4 --model landmark-warp", "empty file", 1),
    ("animate {img} {sp}/dir.mp4 -o {out}/a.mp4 --model landmark-warp", "is a folder, not a file", 1),
    ("animate {img} {sp}/fifo.mp4 -o {out}/a.mp4 --model landmark-warp", "FIFO", 1),
    (f"{A} --audio {{bvid}}/nope.wav", "audio file", 1),
    (f"{A} --audio {{vid}}", "has no audio stream", 1),
    (f"{A} --audio {{sp}}/fifo.mp4", "FIFO", 1),
    ("animate {img} {vid} -o {out}/a.mp4 --model fomm", "needs a checkpoint", 1),
    # --- animate: FOMM checkpoints
    (f"{AF} {{bad}}/nope.pth.tar", "checkpoint", 1),
    (f"{AF} {{bad}}/nontensor.pth.tar", "not a tensor", 1),
    (f"{AF} {{bad}}/int.pth.tar", "dtype int32", 1),
    (f"{AF} {{bad}}/bool.pth.tar", "dtype bool", 1),
    (f"{AF} {{bad}}/nan.pth.tar", "NaN or infinite", 1),
    (f"{AF} {{bad}}/inf.pth.tar", "NaN or infinite", 1),
    (f"{AF} {{bad}}/epoch.pth.tar", "epoch must be a whole number", 1),
    (f"{AF} {{bad}}/negepoch.pth.tar", "epoch must be a whole number", 1),
    (f"{AF} {{bad}}/stride0.pth.tar", "stride-0", 1),
    (f"{AF} {{bad}}/intkey.pth.tar", "not a name", 1),
    (f"{AF} {{bad}}/state-not-dict.pth.tar", "not a mapping", 1),
    (f"{AF} {{bad}}/list.pth.tar", "not a FOMM checkpoint", 1),
    (f"{AF} {{bad}}/nonets.pth.tar", "not a FOMM checkpoint", 1),
    (f"{AF} {{bad}}/code.pth.tar", "refused: this file would run code when loaded", 1),
    (f"{AF} {{bad}}/rawcode.pth.tar", "refused: this file would run code when loaded", 1),
    (f"{AF} {{bad}}/script.pth.tar", "TorchScript archive", 1),
    (f"{AF} {{bad}}/garbage.pth.tar", "not a PyTorch checkpoint", 1),
    (f"{AF} {{bad}}/empty.pth.tar", "not a PyTorch checkpoint", 1),
    (f"{AF} {{bad}}/text.pth.tar", "not a PyTorch checkpoint", 1),
    (f"{AF} {{bad}}/nan.safetensors", "NaN or infinite", 1),
    (f"{AF} {{bad}}/epoch.safetensors", "epoch in its metadata", 1),
    (f"{AF} {{bad}}/garbage.safetensors", "not a safetensors file", 1),
    (f"{AF} {{sp}}/link-to-ck.safetensors", "not a safetensors file", 1),
    (f"{AF} /dev/zero", "character device", 1),
    # --- animate: configs
    (f"{AC} {{bcfg}}/bomb.yaml", "alias bomb", 1),
    (f"{AC} {{bcfg}}/kp-five.yaml", "num_kp must be a whole number", 1),
    (f"{AC} {{bcfg}}/kp-neg.yaml", "num_kp must be at least 1", 1),
    (f"{AC} {{bcfg}}/kp-float.yaml", "num_kp must be a whole number", 1),
    (f"{AC} {{bcfg}}/kp-bool.yaml", "num_kp must be a whole number", 1),
    (f"{AC} {{bcfg}}/kp-huge.yaml", "num_kp must be at most", 1),
    (f"{AC} {{bcfg}}/jacobian-text.yaml", "estimate_jacobian must be true or false", 1),
    (f"{AC} {{bcfg}}/shape-zero.yaml", "frame_shape", 1),
    (f"{AC} {{bcfg}}/shape-neg.yaml", "frame_shape", 1),
    (f"{AC} {{bcfg}}/shape-huge.yaml", "frame_shape", 1),
    (f"{AC} {{bcfg}}/shape-short.yaml", "frame_shape", 1),
    (f"{AC} {{bcfg}}/shape-text.yaml", "frame_shape", 1),
    (f"{AC} {{bcfg}}/shape-channels.yaml", "3 (RGB) channels", 1),
    (f"{AC} {{bcfg}}/features-huge.yaml", "max_features must be at most", 1),
    (f"{AC} {{bcfg}}/temperature-neg.yaml", "temperature must be above 0", 1),
    (f"{AC} {{bcfg}}/nan-temperature.yaml", "temperature must be finite", 1),
    (f"{AC} {{bcfg}}/scale-big.yaml", "scale_factor must be at most 1", 1),
    (f"{AC} {{bcfg}}/blocks-zero.yaml", "num_blocks must be at least 1", 1),
    (f"{AC} {{bcfg}}/unknown-key.yaml", "unknown key 'sharpness'", 1),
    (f"{AC} {{bcfg}}/empty-model.yaml", "model_params is empty", 1),
    (f"{AC} {{bcfg}}/empty-common.yaml", "common_params is empty", 1),
    (f"{AC} {{bcfg}}/model-list.yaml", "must be a mapping", 1),
    (f"{AC} {{bcfg}}/dataset-list.yaml", "dataset_params must be a mapping", 1),
    (f"{AC} {{bcfg}}/no-model.yaml", "no model_params section", 1),
    (f"{AC} {{bcfg}}/scales-text.yaml", "scales must be a number", 1),
    (f"{AC} {{bcfg}}/intkeys.yaml", "not a name", 1),
    (f"{AC} {{bcfg}}/toplevel-intkey.yaml", "not text", 1),
    (f"{AC} {{bcfg}}/binary.yaml", "not a text file", 1),
    (f"{AC} {{bcfg}}/notutf8.yaml", "not a text file", 1),
    (f"{AC} {{bcfg}}/empty.yaml", "no model_params section", 1),
    (f"{AC} {{bcfg}}/list.yaml", "no model_params section", 1),
    (f"{AC} {{bcfg}}/deep.yaml", "nested more than", 1),
    (f"{AC} {{bcfg}}/huge.yaml", "configs are at most", 1),
    (f"{AC} {{bcfg}}/broken.yaml", "not valid YAML", 1),
    (f"{AC} {{bcfg}}/nope.yaml", "does not exist", 1),
    (f"{AC} {{bcfg}}", "is a folder, not a file", 1),
    (f"{AC} no-such-config", "unknown config 'no-such-config'", 1),
    # --- convert
    ("convert {bad}/nan.pth.tar {out}/c.safetensors", "NaN or infinite", 1),
    ("convert {bad}/stride0.pth.tar {out}/c.safetensors", "stride-0", 1),
    ("convert {bad}/code.pth.tar {out}/c.safetensors", "refused: this file would run code", 1),
    ("convert {bad}/script.pth.tar {out}/c.safetensors", "TorchScript archive", 1),
    ("convert {bad}/epoch.pth.tar {out}/c.pth.tar", "epoch must be a whole number", 1),
    ("convert {ck} {ck}", "is the input", 1),
    ("convert {ck} {sp}/link-to-ck.safetensors", "is the input", 1),
    ("convert {ck} {sp}/dir.safetensors", "is an existing folder", 1),
    ("convert {ck} /sys/c.safetensors", "permission denied", 1),
    ("convert {ck} {out}/{long}.safetensors", "name is too long", 1),
    ("convert {bad}/nope.pth.tar {out}/c.safetensors", "does not exist", 1),
    ("convert {sp}/fifo.mp4 {out}/c.safetensors", "FIFO", 1),
    ("convert {bad} {out}/c.safetensors", "is a folder, not a file", 1),
    # --- crop
    (f"{C} --size 0", "--size: must be between 16 and 4096", 2),
    (f"{C} --size 20000", "--size: must be between 16 and 4096", 2),
    (f"{C} --size -5", "--size: must be between", 2),
    (f"{C} --margin nan", "--margin: must be a finite number", 2),
    (f"{C} --margin inf", "--margin: must be a finite number", 2),
    (f"{C} --margin -1", "--margin: must be between 0 and 10", 2),
    (f"{C} --face -1", "--face: must be at least 0", 2),
    (f"{C} --detect-every 0", "--detect-every: must be at least 1", 2),
    (f"{C} --detector magic", "--detector: invalid choice", 2),
    ("crop {vid} -o {vid}", "is the input", 1),
    ("crop {vid} -o {ex}/crop.mp4", "crop.boxes.json already exists", 1),
    ("crop {vid} -o {sp}/dir.mp4", "is an existing folder", 1),
    ("crop {vid} -o /sys/c.mp4", "permission denied", 1),
    ("crop {vid} -o {out}/c.avi", "must end in", 1),
    ("crop {bvid}/garbage.mp4 -o {out}/c.mp4", "not a readable video", 1),
    ("crop {img} -o {out}/c.mp4", "is a still image, not a video: crop it with --source", 1),
    ("crop {sp}/fifo.mp4 -o {out}/c.mp4", "FIFO", 1),
    ("crop {bimg}/big.png -o {out}/c.png --source", "12000x12000 pixels", 1),
    ("crop {bimg}/text.jpg -o {out}/c.png --source", "not a readable image", 1),
    ("crop {img} -o {out}/c.xyz --source", "must end in", 1),
    ("crop {img} -o {img} --source", "is the input", 1),
    # --- demo
    ("demo -o {sp}/dir.mp4", "is an existing folder", 1),
    ("demo -o /sys/demo.mp4", "permission denied", 1),
    ("demo -o {out}/demo.txt", "must end in", 1),
    ("demo -o {ex}/demo.mp4", "demo-driving.mp4 already exists", 1),
    ("demo -o {out}/demo.mp4 --checkpoint {bad}/nan.pth.tar --config {cfg}", "NaN or infinite", 1),
    ("demo -o {out}/demo.mp4 --checkpoint {ck} --config {bcfg}/bomb.yaml", "alias bomb", 1),
    ("demo -o {out}/demo.mp4 --checkpoint {bad}/nope.pth.tar", "does not exist", 1),
    # --- detect
    (f"{D} --frames 0", "--frames: must be between 1", 2),
    (f"{D} --frames -1", "--frames: must be between 1", 2),
    (f"{D} --threshold nan", "--threshold: must be a finite number", 2),
    (f"{D} --threshold 1.5", "--threshold: must be between 0 and 1", 2),
    (f"{D} --threshold -0.1", "--threshold: must be between 0 and 1", 2),
    (f"{D} --top 0", "--top: must be between 1", 2),
    (f"{D} --top -1", "--top: must be between 1", 2),
    (f"{D} --device mps", "unsupported device", 2),
    (f"{D} --arch resnet", "--arch: invalid choice", 2),
    (f"{D} --report {{det}}", "is the input", 1),
    (f"{D} --report {{vid}}", "is the input", 1),
    (f"{D} --report /sys/r.html", "permission denied", 1),
    (f"{D} --report {{sp}}/dir.html", "is an existing folder", 1),
    (f"{D} --report {{out}}/r.pdf", "must end in", 1),
    ("detect {bvid}/nope.mp4 --checkpoint {det}", "does not exist", 1),
    ("detect {sp}/fifo.mp4 --checkpoint {det}", "FIFO", 1),
    ("detect /dev/zero --checkpoint {det}", "character device", 1),
    ("detect {vid} --checkpoint {bad}/det-nan.pt", "NaN or infinite", 1),
    ("detect {vid} --checkpoint {bad}/det-int.pt", "dtype int64", 1),
    ("detect {vid} --checkpoint {bad}/det-stride0.pt", "stride-0", 1),
    ("detect {vid} --checkpoint {bad}/det-code.pt", "refused: this file would run code when loaded", 1),
    ("detect {vid} --checkpoint {bad}/script.pth.tar", "TorchScript archive", 1),
    ("detect {vid} --checkpoint {bad}/nan.safetensors", "NaN or infinite", 1),
    ("detect {vid} --checkpoint {bad}/empty.pth.tar", "cannot read checkpoint", 1),
    ("detect {vid} --checkpoint {bad}/nope.pt", "does not exist", 1),
    ("detect {vid} --checkpoint {bad}", "is a folder, not a file", 1),
    # --- pix2pix pairs, detect's cues, provenance check: option values are usage errors too
    ("pix2pix pairs {vid} -o {out}/pairs --size 8", "--size: must be at least 16, got 8", 2),
    ("pix2pix pairs {vid} -o {out}/pairs --every 0", "--every: must be at least 1, got 0", 2),
    ("detect {vid} --seconds -1", "--seconds: must be above 0, got -1", 2),
    ("provenance check {vid} --frames 0", "--frames: must be at least 1, got 0", 2),
    ("serve --max-upload-mb 0", "--max-upload-mb: must be above 0, got 0", 2),
    # --- train-detector
    (f"{TD} --epochs 0", "--epochs: must be between 1", 2),
    (f"{TD} --batch-size 0", "--batch-size: must be between 2", 2),
    (f"{TD} --batch-size 1", "--batch-size: must be between 2", 2),
    (f"{TD} --lr nan", "--lr: must be a finite number", 2),
    (f"{TD} --lr 0", "--lr: must be above 0", 2),
    (f"{TD} --lr -1", "--lr: must be above 0", 2),
    (f"{TD} --lr 1e400", "--lr: must be a finite number", 2),
    (f"{TD} --frames-per-video 0", "--frames-per-video: must be between 1", 2),
    (f"{TD} --val-fraction 0", "--val-fraction: must be above 0", 2),
    (f"{TD} --val-fraction 1", "--val-fraction: must be at most 0.9", 2),
    (f"{TD} --val-fraction nan", "--val-fraction: must be a finite number", 2),
    (f"{TD} --patience 0", "--patience: must be at least 1", 2),
    (f"{TD} --adversarial-eps nan", "--adversarial-eps", 2),
    (f"{TD} --adversarial-eps 1e400", "--adversarial-eps", 2),
    (f"{TD} --adversarial-eps -1", "--adversarial-eps: must be above 0", 2),
    (f"{TD} --seed -1", "--seed: must be between 0", 2),
    (f"{TD} --device bogus", "unsupported device", 2),
    ("train-detector --real {bvid}/nope --fake {fake} -o {out}/d.pt", "--real folder", 1),
    ("train-detector --real {img} --fake {fake} -o {out}/d.pt", "is a file, not a folder", 1),
    ("train-detector --real {real} --fake {fake} -o {out}/d.txt", "must end in", 1),
    ("train-detector --real {real} --fake {fake} -o {sp}/dir.pt", "is an existing folder", 1),
    ("train-detector --real {real} --fake {fake} -o /sys/d.pt", "permission denied", 1),
    ("train-detector --real {real} --fake {fake} -o {ex}/tr.pt", "tr.pt.state.pt already exists", 1),
    ("train-detector --real {real} --fake {fake} -o {det} --init {det}", "is the input", 1),
    # --- evaluate detection
    (f"{ED} --eps nan", "--eps", 2),
    (f"{ED} --frames 0", "--frames: must be between 1", 2),
    (f"{ED} --threshold 2", "--threshold: must be between 0 and 1", 2),
    (f"{ED} --device cuda:5", "cuda", 2),
    ("evaluate detection --real {real} --fake {fake} -o {vid} --checkpoint {det}", "is a file, not a folder", 1),
    ("evaluate detection --real {real} --fake {fake} -o /sys/ev --checkpoint {det}", "permission denied", 1),
    ("evaluate detection --real {bvid}/none --fake {fake} -o {out}/ev --checkpoint {det}", "does not exist", 1),
    ("evaluate detection --real {real} --fake {fake} -o {out}/ev --checkpoint {bad}/nope.pt", "does not exist", 1),
    ("evaluate detection --real {real} --fake {fake} -o {out}/ev --checkpoint {bad}/det-nan.pt", "NaN", 1),
    # --- evaluate reconstruction / animation
    (f"{ER} --max-videos -1", "--max-videos: must be at least 1", 2),
    (f"{ER} --max-videos 0", "--max-videos: must be at least 1", 2),
    (f"{ER} --max-frames 0", "--max-frames: must be at least 1", 2),
    (f"{ER} --device meta", "unsupported device", 2),
    (f"{ER} -o {{ck}}", "is the input", 1),
    (f"{ER} --markdown {{cfg}}", "is the input", 1),
    (f"{ER} -o {{sp}}/dir.json", "is an existing folder", 1),
    (f"{ER} -o {{out}}/r.json --markdown {{out}}/r.json", "is given twice", 1),
    ("evaluate reconstruction --data {bvid}/none --checkpoint {ck} --config {cfg}", "data folder", 1),
    ("evaluate reconstruction --data {img} --checkpoint {ck} --config {cfg}", "is a file, not a folder", 1),
    ("evaluate reconstruction --data {data} --checkpoint {ck} --config {bcfg}/bomb.yaml", "alias bomb", 1),
    ("evaluate reconstruction --data {data} --checkpoint {ck} --config {bcfg}/nan-temperature.yaml", "finite", 1),
    (f"{EA} --num-pairs 0", "--num-pairs: must be at least 1", 2),
    (f"{EA} --pairs {{ws}}/missing.csv", "pairs list", 1),
    (f"{EA} --pairs {{sp}}/dir.json", "is a folder, not a file", 1),
    (f"{EA} --pairs {{ws}}/pairs.csv", "names video 'nope.mp4', which the dataset does not have", 1),
    (f"{EA} --pairs {{ws}}/pairs-short.csv", "has 1 column(s)", 1),
    (f"{EA} --pairs {{img}}", "not a pairs list", 1),
    ("train --data {ws}/onlytest -o {out}/run --config {cfg}", "all in test/", 1),
    # --- dataset prepare
    (f"{DP} --size 0", "--size: must be between 16 and 4096", 2),
    (f"{DP} --size 20000", "--size: must be between 16 and 4096", 2),
    (f"{DP} --test-fraction 1.5", "--test-fraction: must be between 0 and 1", 2),
    (f"{DP} --test-fraction nan", "--test-fraction: must be a finite number", 2),
    (f"{DP} --min-frames 0", "--min-frames: must be at least 1", 2),
    (f"{DP} --margin nan", "--margin: must be a finite number", 2),
    (f"{DP} --seed -1", "--seed: must be between 0", 2),
    (f"{DP} --format avi", "--format: invalid choice", 2),
    ("dataset prepare {vid} -o {vid}", "is a file, not a folder", 1),
    ("dataset prepare {vid} -o {img}", "is a file, not a folder", 1),
    ("dataset prepare {vid} -o /sys/ds", "permission denied", 1),
    ("dataset prepare {vid} -o {out}/{long}", "name is too long", 1),
    ("dataset prepare {vid} -o {sp}/afile/ds", "is a file, not a folder", 1),
    ("dataset prepare {bvid}/nope.mp4 -o {out}/ds", "does not exist", 1),
    ("dataset prepare {sp}/fifo.mp4 -o {out}/ds", "FIFO", 1),
    ("dataset prepare {bvid} -o {out}/ds", "is a folder, not a file", 1),
    ("dataset prepare {vid} {vid} -o {out}/ds", "distinct names", 1),
    # --- train
    (f"{T} --steps 0", "--steps: must be at least 1", 2),
    (f"{T} --batch-size 0", "--batch-size: must be at least 1", 2),
    (f"{T} --checkpoint-every 0", "--checkpoint-every: must be at least 1", 2),
    (f"{T} --log-every 0", "--log-every: must be at least 1", 2),
    (f"{T} --image-every -1", "--image-every: must be at least 1", 2),
    (f"{T} --workers -1", "--workers: must be between 0 and 64", 2),
    (f"{T} --threads -1", "--threads: must be between 1", 2),
    (f"{T} --threads 0", "--threads: must be between 1", 2),
    (f"{T} --device mps", "unsupported device", 2),
    (f"{T} --seed -1", "--seed: must be between 0", 2),
    (f"{T} --precision fp8", "--precision: invalid choice", 2),
    (f"{TC} {{bcfg}}/bomb.yaml", "alias bomb", 1),
    (f"{TC} {{bcfg}}/shape-huge.yaml", "frame_shape", 1),
    (f"{TC} {{bcfg}}/batch-zero.yaml", "batch_size", 1),
    (f"{TC} {{bcfg}}/epochs-text.yaml", "num_epochs must be a whole number", 1),
    (f"{TC} {{bcfg}}/lr-nan.yaml", "lr_generator must be finite", 1),
    (f"{TC} {{bcfg}}/train-empty.yaml", "train_params is empty", 1),
    ("train --data {bvid}/none -o {out}/run --config {cfg}", "data folder", 1),
    ("train --data {img} -o {out}/run --config {cfg}", "is a file, not a folder", 1),
    ("train --data {data} -o {vid} --config {cfg}", "is a file, not a folder", 1),
    ("train --data {data} -o /sys/run --config {cfg}", "permission denied", 1),
    ("train --data {data} -o {data} --config {cfg}", "is the input", 1),
    (f"{T} --init {{bad}}/nope.pth.tar", "does not exist", 1),
    (f"{T} --perceptual-weights {{sp}}/fifo.mp4", "FIFO", 1),
    ("train --data {data} -o {out}/run --config {cfg} --resume", "nothing to resume", 1),
    ("train --data {data} -o {ws}/run --config {cfg} --resume", "cannot be resumed", 1),
    # --- attack
    (f"{AT} --eps nan", "--eps", 2),
    (f"{AT} --eps 1e400", "--eps", 2),
    (f"{AT} --eps 0", "--eps: must be above 0", 2),
    (f"{AT} --eps -1", "--eps: must be above 0", 2),
    (f"{AT} --eps 300", "--eps: must be above 0", 2),
    (f"{AT} --step nan", "--step", 2),
    (f"{AT} --steps 0", "--steps: must be between 1", 2),
    (f"{AT} --margin nan", "--margin: must be a finite number", 2),
    (f"{AT} --margin -1", "--margin: must be between 0", 2),
    (f"{AT} --frames 0", "--frames: must be at least 1", 2),
    (f"{AT} --recompress 23,abc", "--recompress", 2),
    (f"{AT} --recompress 99", "--recompress", 2),
    (f"{AT} --crf 60", "--crf: must be between 0 and 51", 2),
    (f"{AT} --crf -1", "--crf: must be between 0 and 51", 2),
    (f"{AT} --eot-samples 0", "--eot-samples: must be between 1", 2),
    (f"{AT} --nes-samples 0", "--nes-samples: must be between 2", 2),
    (f"{AT} --nes-sigma 0", "--nes-sigma: must be above 0", 2),
    (f"{AT} --nes-sigma nan", "--nes-sigma: must be a finite number", 2),
    (f"{AT} --nes-tile 0", "--nes-tile: must be between 1", 2),
    (f"{AT} --nes-momentum 1.5", "--nes-momentum: must be between 0", 2),
    (f"{AT} --nes-momentum nan", "--nes-momentum: must be a finite number", 2),
    (f"{AT} --seed -1", "--seed: must be between 0", 2),
    (f"{AT} --method magic", "--method: invalid choice", 2),
    ("attack {vid} --detector {det} -o {vid}", "is the input", 1),
    ("attack {vid} --detector {det} -o {out}/at.gif", "must end in", 1),
    ("attack {vid} --detector {det} -o {ex}/att.mp4", "att.report.md already exists", 1),
    ("attack {vid} --detector {ws}/sidein/v.report.json -o {ws}/sidein/v.mp4", "is the input", 1),
    ("attack {vid} --detector {det} -o {sp}/dir.mp4", "is an existing folder", 1),
    ("attack {vid} --detector {det} -o /sys/at.mp4", "permission denied", 1),
    ("attack {vid} --detector {bad}/det-nan.pt -o {out}/at.mp4", "NaN or infinite", 1),
    ("attack {vid} --detector {bad}/det-code.pt -o {out}/at.mp4", "refused: this file would run code", 1),
    ("attack {bvid}/garbage.mp4 --detector {det} -o {out}/at.mp4 --arch xception", "not a readable video", 1),
    # --- the command line itself
    ("frobnicate", "invalid choice", 2),
    ("dataset", "required", 2),
    ("evaluate", "required", 2),
]


def test_the_table_has_enough_distinct_cases():
    lines = [line for line, _, _ in CASES]
    assert len(set(lines)) == len(lines), "duplicate cases"
    assert len(lines) >= 150
    commands = {line.split()[0] for line in lines}
    assert {"animate", "convert", "crop", "demo", "detect", "train-detector", "evaluate", "dataset", "train",
            "attack"} <= commands


@pytest.mark.parametrize("line,message,code", CASES, ids=[line for line, _, _ in CASES])
def test_bad_input_fails_cleanly(workspace, capfd, line, message, code):
    assert_fails_cleanly(workspace, capfd, line, message, code)
    assert not (workspace.root.parent / "code-ran").exists(), "a checkpoint ran code"
