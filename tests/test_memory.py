"""Animation memory does not grow with the driving video's length (bench/animate_memory.py)."""

import subprocess
import sys

from conftest import REPO_ROOT


def test_peak_memory_of_2000_frames_is_within_1_2x_of_100(fomm_fixtures):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "animate_memory.py"), "--compare", "100", "2000",
         "--config", str(fomm_fixtures / "tiny-vox.yaml")],
        capture_output=True, text=True, check=True,
    )
    print(result.stdout)
    ratio = float(result.stdout.rsplit(":", 1)[1])
    assert ratio <= 1.2
