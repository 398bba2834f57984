"""Shared test fixtures: where the test data beside the checkout lives."""

from pathlib import Path

import pytest

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
