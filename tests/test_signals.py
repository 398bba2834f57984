"""SIGTERM and SIGHUP in the middle of every long command: exit 128+signal, one line, no file left.

Each command runs in a child process; the signal is sent once its first temporary output
(`.NAME.*.partial*`) exists, i.e. while it is writing. Both signals of one command run
side by side to keep the test short. Also: bad inputs that would allocate a lot stay under
2 GB of address space (the child runs under RLIMIT_AS) and fail with their own message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, shared_path

SIGNALS = (signal.SIGTERM, signal.SIGHUP)
MEMORY_LIMIT = 2 * 1024**3


def _child_setup() -> None:
    # Background shells hand children some signals ignored: give the defaults back.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _start(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "fakelab", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, preexec_fn=_child_setup,
    )  # fmt: skip


def _wait_for_partial(folder: Path, process: subprocess.Popen, prefix: str = ".", timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(".partial" in path.name and path.name.startswith(prefix) for path in folder.rglob("*")):
            return
        if process.poll() is not None:
            raise AssertionError(f"ended before it could be interrupted: {process.communicate()[1][-2000:]}")
        time.sleep(0.02)
    process.kill()
    raise AssertionError("no temporary output appeared")


@pytest.fixture(scope="module")
def detector_checkpoint(tmp_path_factory) -> Path:
    from fakelab.detection.checkpoint import save_detector
    from fakelab.detection.efficientnet import efficientnet_lite0

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("detector") / "lite0.safetensors"
    save_detector(efficientnet_lite0().eval(), path)
    return path


def _commands(media: Path, detector: Path) -> dict[str, object]:
    return {
        "animate": lambda out: ["animate", str(media / "s0.jpg"), str(media / "d13.mp4"), "-o", str(out / "a.mp4"),
                                "--model", "landmark-warp"],
        "attack": lambda out: ["attack", str(media / "d0.mp4"), "--detector", str(detector), "-o", str(out / "at.mp4"),
                               "--steps", "50", "--frames", "20"],
        "demo": lambda out: ["demo", "-o", str(out / "new" / "demo.mp4")],  # its folder is removed too
        "dataset prepare": lambda out: ["dataset", "prepare", str(media / "d13.mp4"), "-o", str(out / "ds"),
                                        "--size", "64", "--no-face-crop", "--min-frames", "2"],
    }


# The long commands of the issue; train's own test (test_training.py) sends SIGINT, SIGTERM and SIGHUP.
@pytest.mark.parametrize("command", ["animate", "attack", "demo", "dataset prepare"])
def test_sigterm_and_sighup_leave_nothing_behind(command, media, detector_checkpoint, tmp_path):
    argv_for = _commands(media, detector_checkpoint)[command]
    runs = []
    for sig in SIGNALS:
        out = tmp_path / sig.name
        out.mkdir()
        runs.append((sig, out, _start(argv_for(out))))
    for sig, out, process in runs:
        # The demo is interrupted while writing its second video: the finished first one goes too.
        _wait_for_partial(out, process, ".demo." if command == "demo" else ".")
        process.send_signal(sig)
    for sig, out, process in runs:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 128 + sig, stderr[-2000:]
        last = stderr.strip().splitlines()[-1]
        assert f"stopped by {sig.name}; unfinished outputs were removed" in last, stderr[-2000:]
        assert "Traceback" not in stderr
        left = list(out.rglob("*"))
        if command == "dataset prepare":
            # Finished clips stay (the next run continues from them); nothing half-written does.
            assert not [p for p in left if ".partial" in p.name], left
        else:
            assert left == [], left


MEMORY_CASES = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    from fakelab.cli import main
    for argv in {cases!r}:
        print(main(argv), flush=True)
    """
)


def test_bad_inputs_that_would_allocate_a_lot_stay_under_2_gb(tmp_path, media):
    from PIL import Image

    fixtures = shared_path("fixtures", "fomm")
    big = tmp_path / "big.png"
    Image.new("L", (12000, 12000)).save(big)
    stride0 = tmp_path / "stride0.pth.tar"
    torch.save({"generator": {"w": torch.ones(1).expand(4_000_000_000)}, "kp_detector": {}}, stride0)
    text = (fixtures / "tiny-vox.yaml").read_text()
    bomb = tmp_path / "bomb.yaml"
    levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for index, name in enumerate("bcdefghi"):
        levels.append(f"{name}: &{name} [{', '.join(['*' + 'abcdefghi'[index]] * 9)}]")
    bomb.write_text(text + "\n" + "\n".join(levels) + "\n")
    huge_shape = tmp_path / "huge.yaml"
    huge_shape.write_text(text.replace("  - 128\n  - 128\n  - 3", "  - 60000\n  - 60000\n  - 3"))
    huge_features = tmp_path / "features.yaml"
    huge_features.write_text(text.replace("max_features: 64", "max_features: 600000"))
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    out = tmp_path / "out"
    out.mkdir()
    checkpoint = str(fixtures / "tiny-vox-cpk.pth.tar")
    cases = [
        (["animate", str(big), str(media / "d0.mp4"), "-o", str(out / "a.mp4"), "--model", "landmark-warp"], "12000x12000"),
        (["crop", str(big), "-o", str(out / "c.png"), "--source"], "12000x12000"),
        (["convert", str(stride0), str(out / "c.safetensors")], "stride-0"),
        (["train", "--data", str(data), "-o", str(out / "run"), "--config", str(bomb)], "alias bomb"),
        (["train", "--data", str(data), "-o", str(out / "run"), "--config", str(huge_shape)], "frame_shape"),
        (["animate", str(media / "s0.jpg"), str(media / "d0.mp4"), "-o", str(out / "a.mp4"), "--checkpoint", checkpoint,
          "--config", str(huge_features)], "max_features"),
    ]
    script = MEMORY_CASES.format(limit=MEMORY_LIMIT, cases=[argv for argv, _ in cases])
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    errors = result.stderr.strip().splitlines()
    assert result.stdout.split() == ["1"] * len(cases), result.stderr
    assert len(errors) == len(cases), errors
    for line, (_, message) in zip(errors, cases):
        assert message in line and "out of memory" not in line, line
    assert list(out.iterdir()) == []
