"""bench/gpu_check.py cannot rot: its --dry-run runs every step (train with gradient checkpointing, evaluate, the
CPU parity check, the registered pyfunc) on the CPU with the tiny model, and it refuses a real run without CUDA."""

import os
import subprocess
import sys

import pytest
import torch

from support.dag import run_root
from support.paths import ROOT

SCRIPT = ROOT / "bench" / "gpu_check.py"


def run(*args, cache):
    env = dict(os.environ, MEDAUG_CACHE=str(cache), OMP_NUM_THREADS="1", MLFLOW_DISABLE_TELEMETRY="true")
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_dry_run_passes_every_check_and_leaves_results_alone(tmp_path_factory):
    results = (ROOT / "bench" / "RESULTS.md").read_bytes()
    done = run("--dry-run", cache=run_root(tmp_path_factory) / "medaug-cache")
    assert done.returncode == 0, done.stderr[-3000:]
    for row in ("| train | 3 steps of batch 8", "gradient checkpointing", "| cpu vs cpu | labels identical on 8/8",
                "| registered pyfunc | answers equal the evaluate stage's on 8/8", "**PASS**"):
        assert row in done.stdout, done.stdout
    assert (ROOT / "bench" / "RESULTS.md").read_bytes() == results


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the real check would run")
def test_a_real_run_without_cuda_stops_with_what_to_do(tmp_path):
    done = run(cache=tmp_path)
    assert done.returncode == 2 and "no CUDA device here" in done.stderr and "--dry-run" in done.stderr
