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
