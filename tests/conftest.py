import os
from pathlib import Path

import pytest

# Set before any test imports dvc, mlflow or transformers.
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
PUBMEDQA = ROOT.parent / "shared" / "data" / "pubmedqa"


@pytest.fixture
def tiny_cache(tmp_path_factory, monkeypatch):
    """Tiny test models built in a per-session cache, on one thread (tiny matrices: threads only add sync cost)."""
    import torch

    monkeypatch.setenv("MEDAUG_CACHE", str(tmp_path_factory.getbasetemp() / "medaug-cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
