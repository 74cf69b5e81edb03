"""The unit tier: in-process only (no subprocess, no DVC, no server of any kind; tiny in-process models allowed).
Every test here is marked `unit` (tests/conftest.py)."""

import pytest


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """The `datasets` cache in this test's tmp_path (the loaders' parquet reads never touch the user's cache);
    `pytestmark = pytest.mark.usefixtures("hf_cache")` in the modules that load hub-schema files."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
