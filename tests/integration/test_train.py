"""Train stage script in its own processes (tiny models): resume after SIGKILL, 2-process DDP (torchrun, gloo,
accelerate), FSDP, launchers that would train otherwise than asked. The training itself, in process:
tests/unit/test_train.py."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medaug.data.schema import write_records
from support import forkserver
from support.dag import run_root
from support.learnable import learnable
from support.paths import ROOT

pytestmark = pytest.mark.usefixtures("tiny_cache")
TRAIN = [str(ROOT / "stages/train.py"), "tiny", "original", "0"]

def stage_project(root, **train):
    """A project dir for running stages/train.py: params.yaml, a training set and a dev split."""
    root.mkdir(parents=True)
    import yaml

    (root / "params.yaml").write_text(yaml.safe_dump({
        "models": {"tiny": "tiny-llama"}, "task": {"max_seq_len": 64},
        "train": {"models": ["tiny"], "variants": ["original"], "batch_size": 4, "grad_accum": 1,
                  "learning_rate": 1e-2, "warmup_ratio": 0.0, **train}}))
    write_records(root / "data/train/original.jsonl", learnable(24))
    write_records(root / "data/prepared/dev.jsonl", learnable(6, start=50))
    return root


def stage_env():
    return dict(os.environ, OMP_NUM_THREADS="1", MLFLOW_DISABLE_TELEMETRY="true")


@pytest.fixture
def reference(tmp_path_factory):
    """Run the train stage in one process as `python stages/train.py` through this worker's fork server
    (support.forkserver: torch's imports paid once per worker, not 8 s a run): the single-process runs the launched
    and killed ones are compared with. What is launched or killed runs in fresh processes."""
    env = forkserver.env(stage_env(), run_root(tmp_path_factory))
    return lambda root, **kw: subprocess.run(["python", *TRAIN], cwd=root, env=env, capture_output=True, text=True,
                                             **kw)


def adapter(root):
    return load_file(root / "models/tiny-original-0/adapter_model.safetensors")


def test_a_training_killed_after_a_checkpoint_resumes_to_the_same_adapter(tmp_path, reference):
    """SIGKILL the real stage script once a checkpoint is on disk; the rerun resumes from it (not from step 0)
    and ends with the very adapter an uninterrupted run gives."""
    whole = stage_project(tmp_path / "whole", max_steps=120, eval_steps=20)
    reference(whole, check=True)
    killed = stage_project(tmp_path / "killed", max_steps=120, eval_steps=20)
    proc = subprocess.Popen([sys.executable, *TRAIN], cwd=killed, env=stage_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            done = list((killed / ".cache/checkpoints").glob("*/checkpoint-40/trainer_state.json"))
            if done:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the stage finished before it could be killed"
    assert not (killed / "models/tiny-original-0").exists()  # nothing half-written
    rerun = reference(killed)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "medaug: resuming from" in rerun.stderr  # a status line: the medaug logger, on stderr
    metrics = json.loads((killed / "reports/train/tiny-original-0.json").read_text())
    assert metrics["resumed_from_step"] >= 40 and metrics["steps"] == 120
    a, b = adapter(whole), adapter(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the curves cover the whole run, before and after the kill
    losses = json.loads((killed / "plots/train/tiny-original-0.json").read_text())
    assert [r["step"] for r in losses] == list(range(1, 121))
    assert not list((killed / ".cache/checkpoints").glob("*/checkpoint-*"))  # removed after success


def test_two_processes_under_torchrun_train_the_adapter_of_one_process(tmp_path, reference):
    """DDP on CPU (gloo): 2 processes x batch 4 give the adapter of 1 process x batch 8 (each step sees the whole
    training set, so the sampler's order does not matter; no dropout)."""
    train = {"max_steps": 3, "lora": {"dropout": 0.0}, "learning_rate": 5e-3}
    one = stage_project(tmp_path / "one", batch_size=8, **train)
    two = stage_project(tmp_path / "two", batch_size=4, **train)
    for root in (one, two):
        write_records(root / "data/train/original.jsonl", learnable(8))
    reference(one, check=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run([*torchrun, *TRAIN], cwd=two, env=stage_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m1, m2 = (json.loads((r / "reports/train/tiny-original-0.json").read_text()) for r in (one, two))
    assert m1["steps"] == m2["steps"] == 3
    a, b = adapter(one), adapter(two)
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a), max((a[k] - b[k]).abs().max() for k in a)
    assert m2["train_loss"] == pytest.approx(m1["train_loss"], abs=1e-5)
    said = [line for line in proc.stderr.splitlines() if line.startswith("train@tiny-original-0: wrote ")]
    assert len(said) == 1, proc.stderr[-3000:]  # the stage's last line, from process 0 alone


ACCELERATE = [str(Path(sys.executable).parent / "accelerate"), "launch"]


def one_and_two_processes(tmp_path, reference, launcher, processes=2):
    """Two stage projects on the same 8 examples: `one` is trained in one process with batch 8; `two` (train.launcher
    `launcher`, batch 8 / `processes` per process) is left for the caller to launch."""
    train = {"max_steps": 3, "lora": {"dropout": 0.0}, "learning_rate": 5e-3}
    one = stage_project(tmp_path / "one", batch_size=8, **train)
    two = stage_project(tmp_path / "two", batch_size=8 // processes, launcher=launcher, **train)
    for root in (one, two):
        write_records(root / "data/train/original.jsonl", learnable(8))
    reference(one, check=True)
    return one, two


def test_accelerate_launch_ddp_on_cpu_processes_trains_the_adapter_of_one_process(tmp_path, reference):
    """train.launcher `accelerate launch --multi_gpu --num_processes 2`: on CPU, accelerate runs torch.distributed
    (gloo) under that flag's name, and 2 processes x batch 4 give the adapter of 1 process x batch 8."""
    launcher = "accelerate launch --multi_gpu --num_processes 2"
    one, two = one_and_two_processes(tmp_path, reference, launcher)
    proc = subprocess.run([*ACCELERATE, "--multi_gpu", "--num_processes", "2", str(ROOT / "stages/train.py"), "tiny",
                           "original", "0"], cwd=two, env=stage_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m1, m2 = (json.loads((r / "reports/train/tiny-original-0.json").read_text()) for r in (one, two))
    assert m1["steps"] == m2["steps"] == 3 and m2["train_loss"] == pytest.approx(m1["train_loss"], abs=1e-5)
    a, b = adapter(one), adapter(two)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine these launchers do what they ask")
@pytest.mark.parametrize("flags, message", [
    (["--num_processes", "2"], r"asks for 2 processes but this is the only one: .* use `accelerate launch --multi_gpu "
                               r"--num_processes 2`"),
    (["--use_fsdp", "--num_processes", "2"], r"asks for FSDP, but accelerate applies FSDP only to GPU processes")])
def test_a_launcher_that_would_train_otherwise_than_asked_fails_with_the_fix(tmp_path, flags, message):
    """Without GPUs, `accelerate launch --num_processes 2` starts one process (half the global batch, silently),
    and `--use_fsdp` gives plain DDP (accelerate/state.py applies FSDP to GPU-type runs only): both stop before
    training, naming the fix, and write no model."""
    root = stage_project(tmp_path / "p", max_steps=2, launcher="accelerate launch " + " ".join(flags))
    proc = subprocess.run([*ACCELERATE, *flags, str(ROOT / "stages/train.py"), "tiny", "original", "0"], cwd=root,
                          env=stage_env(), capture_output=True, text=True)
    assert proc.returncode != 0 and re.search(message, proc.stderr), proc.stderr[-3000:]
    assert not (root / "models").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FSDP needs CUDA: accelerate applies FSDP only to GPU-type "
                                                          "distributed runs (accelerate/state.py); on CPU the launch is "
                                                          "refused (test above), and bench/gpu_check.py runs this")
def test_fsdp_through_accelerate_saves_the_adapter_of_one_process(tmp_path, reference):
    """Every rank takes part in the save (the full state dict is gathered), and the adapter equals one process's."""
    n = min(2, torch.cuda.device_count())
    one, two = one_and_two_processes(tmp_path, reference, f"accelerate launch --use_fsdp --num_processes {n}", n)
    proc = subprocess.run([*ACCELERATE, "--use_fsdp", "--num_processes", str(n), str(ROOT / "stages/train.py"),
                           "tiny", "original", "0"], cwd=two, env=stage_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = adapter(one), adapter(two)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-3) for k in a)


WRITE_ADAPTER = """
import sys
from pathlib import Path
from medaug.params import parse_params
from medaug.train import prepare_model, write_output
p = parse_params({"models": {"tiny": "tiny-llama"}, "train": {"models": ["tiny"]}})
model, tok = prepare_model("tiny-llama", p.train, 0)
write_output(Path(sys.argv[1]), model, tok, {})
"""


def test_the_same_adapter_is_the_same_bytes_in_every_process(tmp_path):
    """PEFT writes target_modules (a set once all-linear expands) in set order, which string-hash salting changes
    per process: DVC would see a new adapter on every run. Two hash seeds that order the set differently."""
    for seed in ("1", "2"):
        subprocess.run([sys.executable, "-c", WRITE_ADAPTER, str(tmp_path / seed)], check=True, capture_output=True,
                       env={**stage_env(), "PYTHONHASHSEED": seed})
    one, two = ((tmp_path / s / "adapter_config.json").read_bytes() for s in ("1", "2"))
    assert one == two
    modules = json.loads(one)["target_modules"]
    assert modules == sorted(modules) and len(modules) > 1
