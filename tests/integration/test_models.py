"""Model resolver: the tiny test models build byte for byte the same in another process. The resolver in process
(tiny models, the packaged Gemma-3-270M): tests/unit/test_models.py."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medaug.models import resolve
from support.paths import ROOT

SRC = ROOT / "src"


pytestmark = pytest.mark.usefixtures("tiny_cache")


BUILD = """
import hashlib, sys
from pathlib import Path
from medaug.models import resolve
for name in ("tiny-llama", "tiny-gpt2"):
    d = Path(resolve(name))
    print(name, *(hashlib.sha256((d / f).read_bytes()).hexdigest() for f in ("model.safetensors", "tokenizer.json")))
"""


def test_tiny_models_build_identically_in_two_processes(tmp_path):
    child = subprocess.run([sys.executable, "-c", BUILD], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "MEDAUG_CACHE": str(tmp_path), "PYTHONPATH": str(SRC),
                                "OMP_NUM_THREADS": "1"})
    assert child.returncode == 0, child.stderr[-2000:]
    here = {}
    for name in ("tiny-llama", "tiny-gpt2"):
        d = Path(resolve(name))  # built (or already cached) by this process, in another cache
        here[name] = [hashlib.sha256((d / f).read_bytes()).hexdigest() for f in ("model.safetensors", "tokenizer.json")]
    there = {line.split()[0]: line.split()[1:] for line in child.stdout.splitlines()}
    assert there == here
    assert here["tiny-llama"][0] != here["tiny-gpt2"][0]
    # built in place under a lock, no temp dir left behind
    assert sorted(p.name for p in (tmp_path / "models").iterdir() if p.is_dir()) == ["tiny-gpt2", "tiny-llama"]
