"""Shared test fixtures: where the test data beside the checkout lives."""

import os
import tempfile
from pathlib import Path

import pytest

# FOMM's render runs as a per-machine calibration chose (fakelab.animation.calibrate), measured
# on first use: tests run the plain torch modules unless they ask for more, and keep exports
# and calibrations in a cache of their own.
os.environ.setdefault("FAKELAB_BACKEND", "torch")
os.environ.setdefault("FAKELAB_CACHE", str(Path(tempfile.gettempdir()) / f"fakelab-test-cache-{os.getuid()}"))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A file under ../shared, or a failure that says where it should be."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"test data {path} is missing: ../shared/ must sit beside the checkout")
    return path


@pytest.fixture
def fomm_fixtures() -> Path:
    return shared_path("fixtures", "fomm")


@pytest.fixture
def media() -> Path:
    return shared_path("media")


@pytest.fixture(autouse=True, scope="session")
def _private_config_folder(tmp_path_factory):
    """Outputs are signed with a key made on first use in $XDG_CONFIG_HOME/fakelab: keep the
    tests' key out of the user's own config folder (subprocesses inherit the variable)."""
    import os

    previous = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config"))
    yield
    if previous is None:
        os.environ.pop("XDG_CONFIG_HOME", None)
    else:
        os.environ["XDG_CONFIG_HOME"] = previous
