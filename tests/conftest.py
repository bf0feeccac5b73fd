"""Shared test setup: offline hubs, a private ASSAY_HOME, paths to the real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ASSAY_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"real data not found at {SHARED_DATA} (set ASSAY_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _assay_home(tmp_path_factory, monkeypatch):
    """Each test gets its own ASSAY_HOME unless it sets one; the model cache stays shared."""
    home = tmp_path_factory.mktemp("assay-home")
    monkeypatch.setenv("ASSAY_HOME", str(home))
    monkeypatch.setenv("ASSAY_MODEL_CACHE", os.environ.get("ASSAY_MODEL_CACHE", str(Path.home() / ".assay" / "models")))
    yield home
