"""Train stage: completion-only loss with logits only at the answer, packing, LoRA and full training, dev
evaluation with the best checkpoint kept, resume after SIGKILL, 2-process DDP (torchrun, gloo) (tiny models)."""

import dataclasses
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

from medaug.data.schema import Record, write_records
from medaug.errors import MedaugError
from medaug.evaluate import Scorer, load_candidate
from medaug.evaluate.task import collate, encode
from medaug.models import load_model_and_tokenizer
from medaug.params import parse_params
from medaug.train import completion_loss, run
from medaug.train.loop import pack


pytestmark = pytest.mark.usefixtures("tiny_cache")


CUE = {"yes": "improved", "no": "worsened", "maybe": "varied"}


def learnable(n, start=0):
    """The label is given away by one word of the question: a tiny model can learn it in a few steps."""
    labels = ["yes", "no", "maybe"]
    return [Record(id=f"t{i}", question=f"Did outcome {i} improve? It {CUE[labels[i % 3]]}.",
                   contexts=[f"We followed {10 + i} patients for a year."],
                   final_decision=labels[i % 3]) for i in range(start, start + n)]


def params(ref="tiny-llama", **train):
    return parse_params({"models": {"tiny": ref}, "task": {"max_seq_len": 64},
                         "train": {"models": ["tiny"], "batch_size": 4, "grad_accum": 1, **train}})


def dataset_loss(model, tokenizer, p, recs):
    model.eval()
    batch = collate([encode(tokenizer, r, p.task, answer=r.final_decision) for r in recs], tokenizer.pad_token_id)
    with torch.no_grad():
        return completion_loss(model, batch).item()


def accuracy(model, tokenizer, p, recs):
    preds = Scorer(model, tokenizer, p.task, 8).predict(recs, progress=False)
    return sum(q["prediction"] == r.final_decision for q, r in zip(preds, recs)) / len(recs)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_loss_with_logits_to_keep_equals_loss_from_full_logits(name):
    model, tok = load_model_and_tokenizer(name)
    model.eval()
    texts = [("Abstract: short.\nAnswer:", " yes"),
             ("Abstract: a much longer abstract about heart failure and mortality.\nAnswer:", " maybe not yes"),
             ("Q: is it?\nAnswer:", " no no")]
    examples = []
    for prompt, answer in texts:
        p_ids, a_ids = tok(prompt).input_ids, tok(answer, add_special_tokens=False).input_ids
        examples.append({"input_ids": p_ids + a_ids, "n_prompt": len(p_ids)})
    batch = collate(examples, tok.pad_token_id)
    assert batch["answer_mask"].shape[1] == max(len(e["input_ids"]) - e["n_prompt"] for e in examples)
    with torch.no_grad():
        fast = completion_loss(model, batch).item()
        nll = []  # each example alone, no padding, full logits
        for e in examples:
            ids = torch.tensor([e["input_ids"]])
            logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            nll += [-logprobs[j - 1, ids[0, j]].item() for j in range(e["n_prompt"], ids.shape[1])]
    assert len(nll) == int(batch["answer_mask"].sum())
    assert fast == pytest.approx(sum(nll) / len(nll), abs=1e-5)


def test_training_reduces_loss_and_writes_an_adapter(tmp_path):
    train_path = tmp_path / "train" / "original.jsonl"
    write_records(train_path, learnable(24))
    p = params(max_steps=60, learning_rate=1e-2, warmup_ratio=0.0)
    base, tok = load_model_and_tokenizer("tiny-llama")
    before = dataset_loss(base, tok, p, learnable(24))
    out, metrics_path = tmp_path / "models" / "tiny-original", tmp_path / "metrics" / "train.json"
    metrics = run(p, "tiny", "original", 0, train_path, out, metrics_path)
    assert json.loads(metrics_path.read_text()) == metrics
    assert metrics["n_train"] == 24 and metrics["steps"] == 60
    assert "train_runtime_s" not in metrics  # a wall time: MLflow's, never the report's (in git)
    meta = json.loads((out / "medaug.json").read_text())
    assert {k: meta[k] for k in ("base", "model", "variant", "seed", "method", "n_train")} == \
        {"base": "tiny-llama", "model": "tiny", "variant": "original", "seed": 0, "method": "lora", "n_train": 24}
    assert meta["precision"] == ("bf16" if torch.cuda.is_available() else "fp32")  # train.precision auto, resolved
    assert meta["train"] == {k: v for k, v in dataclasses.asdict(p.train).items()
                             if k not in ("models", "variants", "seeds", "launcher")}  # no dep of a train stage
    assert (out / "adapter_config.json").exists() and (out / "tokenizer.json").exists()
    assert [x.name for x in out.parent.iterdir()] == ["tiny-original"]  # no temp dir left behind
    merged, tok = load_candidate(p, "tiny", out)
    after = dataset_loss(merged, tok, p, learnable(24))
    assert after < 0.5 * before, (before, after)
    assert metrics["train_loss"] < 0.5 * before
    # it learned the cue, not just the label set: every training question is answered right (the base: a third)
    assert accuracy(merged, tok, p, learnable(24)) == 1.0
    assert accuracy(base, tok, p, learnable(24)) < 0.5


def test_training_is_seeded_and_checks_its_variant(tmp_path):
    train_path = tmp_path / "augmented.jsonl"
    write_records(train_path, learnable(6) + learnable(5, start=100))
    p = params(ref="tiny-gpt2", max_steps=2)
    metrics = run(p, "tiny", "augmented", 0, train_path, tmp_path / "m", tmp_path / "metrics.json")
    assert metrics["n_train"] == 11 and metrics["steps"] == 2
    assert json.loads((tmp_path / "m" / "medaug.json").read_text())["variant"] == "augmented"
    # seeded: a second run gives the very same adapter
    run(p, "tiny", "augmented", 0, train_path, tmp_path / "again", tmp_path / "metrics-again.json")
    first, second = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("m", "again"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    # another seed (train.seeds: [0, 1]) is another init and data order: another adapter, named by its seed
    run(p, "tiny", "augmented", 1, train_path, tmp_path / "seed1", tmp_path / "metrics-seed1.json")
    other = load_file(tmp_path / "seed1" / "adapter_model.safetensors")
    assert not all(torch.equal(first[k], other[k]) for k in first)
    assert json.loads((tmp_path / "seed1" / "medaug.json").read_text())["seed"] == 1
    with pytest.raises(MedaugError, match="unknown variant"):
        run(p, "tiny", "zero-shot", 0, train_path, tmp_path / "m2", tmp_path / "metrics2.json")


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_a_packed_batch_gives_the_loss_of_the_padded_batch(name):
    """One row, positions restarting per example, logits kept at a boolean mask: the same loss as left padding
    (so examples do not attend across their boundaries)."""
    model, tok = load_model_and_tokenizer(name)
    model.eval()
    p = params(ref=name)
    recs = learnable(5)
    recs[1].contexts = ["A much longer abstract: " + "patients were followed for years. " * 6]
    examples = [encode(tok, r, p.task, answer=r.final_decision) for r in recs]
    packed = pack(examples)
    assert packed["input_ids"].shape == (1, sum(len(e["input_ids"]) for e in examples))
    assert int(packed["keep"].sum()) == len(packed["targets"]) == 5
    with torch.no_grad():
        padded_loss = completion_loss(model, collate(examples, tok.pad_token_id)).item()
        packed_loss = completion_loss(model, packed).item()
        # with cross-example attention the loss would differ: positions alone do not separate them
        crossed = dict(packed, position_ids=torch.arange(packed["input_ids"].shape[1])[None])
        crossed_loss = completion_loss(model, crossed).item()
    assert packed_loss == pytest.approx(padded_loss, abs=1e-5)
    assert abs(crossed_loss - padded_loss) > 1e-3


def test_packing_trains_like_padding(tmp_path):
    """Same batches, same step losses (to 1e-3: Adam's first steps amplify float noise in near-zero gradients)."""
    train_path = tmp_path / "original.jsonl"
    write_records(train_path, learnable(24))
    curves = {}
    for packing in (False, True):
        p = params(max_steps=6, learning_rate=1e-2, warmup_ratio=0.0, packing=packing,
                   lora={"dropout": 0.0}, checkpoints=str(tmp_path / "ckpt"))
        plots = (tmp_path / f"loss-{packing}.json", tmp_path / f"dev-{packing}.json")
        run(p, "tiny", "original", 0, train_path, tmp_path / f"m{packing}", tmp_path / f"m{packing}.json", plots=plots)
        curves[packing] = [r["loss"] for r in json.loads(plots[0].read_text())]
    assert len(curves[True]) == 6 and curves[True][0] == pytest.approx(curves[False][0], abs=1e-5)
    assert curves[True] == pytest.approx(curves[False], abs=1e-3)
    assert curves[True][-1] < curves[True][0] - 1


def flipped(recs):
    """The same questions with the labels rotated: what the training teaches is wrong on these."""
    nxt = {"yes": "no", "no": "maybe", "maybe": "yes"}
    return [Record(id=f"d{r.id}", question=r.question, contexts=r.contexts, final_decision=nxt[r.final_decision])
            for r in recs]


def dev_loss(model, tok, p, recs):
    rows = Scorer(model, tok, p.task, 8).predict(recs, progress=False)
    return -sum(row["logprobs"][r.final_decision] for r, row in zip(recs, rows)) / len(recs)


def test_dev_evaluation_keeps_the_best_checkpoint_and_writes_curves(tmp_path):
    train_path, dev_path = tmp_path / "original.jsonl", tmp_path / "dev.jsonl"
    write_records(train_path, learnable(24))
    write_records(dev_path, flipped(learnable(6)))  # dev loss rises as training goes on: the best is early
    p = params(max_steps=40, learning_rate=1e-2, warmup_ratio=0.0, eval_steps=10, best_metric="loss",
               checkpoints=str(tmp_path / "ckpt"))
    plots = (tmp_path / "plots/train/tiny-original-0.json", tmp_path / "plots/dev/tiny-original.json")
    metrics = run(p, "tiny", "original", 0, train_path, tmp_path / "m", tmp_path / "metrics.json",
                  dev_path=dev_path, plots=plots)
    losses, dev = (json.loads(x.read_text()) for x in plots)
    assert [r["step"] for r in losses] == list(range(1, 41)) and all(r["loss"] > 0 for r in losses)
    assert [r["step"] for r in dev] == [10, 20, 30, 40]
    assert set(dev[0]) == {"step", "dev_accuracy", "dev_macro_f1", "dev_loss"}
    best = min(dev, key=lambda r: r["dev_loss"])
    assert best["step"] < 40 and best["dev_loss"] < dev[-1]["dev_loss"]
    assert metrics["best_step"] == best["step"] and metrics["dev_loss"] == pytest.approx(best["dev_loss"])
    assert metrics["n_dev"] == 6 and metrics["steps"] == 40
    # the output is the best checkpoint's model, not the last one's
    model, tok = load_candidate(p, "tiny", tmp_path / "m")
    assert dev_loss(model, tok, p, flipped(learnable(6))) == pytest.approx(best["dev_loss"], abs=1e-4)
    assert not (tmp_path / "ckpt").exists() or not any((tmp_path / "ckpt").iterdir())  # cleaned up on success


def test_full_fine_tuning_writes_a_whole_model(tmp_path):
    train_path = tmp_path / "original.jsonl"
    write_records(train_path, learnable(12))
    p = params(method="full", max_steps=3, learning_rate=1e-3, checkpoints=str(tmp_path / "ckpt"))
    run(p, "tiny", "original", 0, train_path, tmp_path / "m", tmp_path / "metrics.json")
    assert (tmp_path / "m" / "config.json").exists() and not (tmp_path / "m" / "adapter_config.json").exists()
    model, tok = load_candidate(p, "tiny", tmp_path / "m")
    base, _ = load_model_and_tokenizer("tiny-llama")
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
    assert len(changed) > 10  # every layer moved, not only adapters


ROOT = Path(__file__).resolve().parents[1]


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
    return dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1", MLFLOW_DISABLE_TELEMETRY="true")


def adapter(root):
    return load_file(root / "models/tiny-original-0/adapter_model.safetensors")


def test_a_training_killed_after_a_checkpoint_resumes_to_the_same_adapter(tmp_path):
    """SIGKILL the real stage script once a checkpoint is on disk; the rerun resumes from it (not from step 0)
    and ends with the very adapter an uninterrupted run gives."""
    cmd = [sys.executable, str(ROOT / "stages/train.py"), "tiny", "original", "0"]
    whole = stage_project(tmp_path / "whole", max_steps=120, eval_steps=20)
    subprocess.run(cmd, cwd=whole, env=stage_env(), check=True, capture_output=True)
    killed = stage_project(tmp_path / "killed", max_steps=120, eval_steps=20)
    proc = subprocess.Popen(cmd, cwd=killed, env=stage_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    rerun = subprocess.run(cmd, cwd=killed, env=stage_env(), capture_output=True, text=True)
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


def test_two_processes_under_torchrun_train_the_adapter_of_one_process(tmp_path):
    """DDP on CPU (gloo): 2 processes x batch 4 give the adapter of 1 process x batch 8 (each step sees the whole
    training set, so the sampler's order does not matter; no dropout)."""
    train = {"max_steps": 3, "lora": {"dropout": 0.0}, "learning_rate": 5e-3}
    one = stage_project(tmp_path / "one", batch_size=8, **train)
    two = stage_project(tmp_path / "two", batch_size=4, **train)
    for root in (one, two):
        write_records(root / "data/train/original.jsonl", learnable(8))
    script = [str(ROOT / "stages/train.py"), "tiny", "original", "0"]
    subprocess.run([sys.executable, *script], cwd=one, env=stage_env(), check=True, capture_output=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run([*torchrun, *script], cwd=two, env=stage_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m1, m2 = (json.loads((r / "reports/train/tiny-original-0.json").read_text()) for r in (one, two))
    assert m1["steps"] == m2["steps"] == 3
    a, b = adapter(one), adapter(two)
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a), max((a[k] - b[k]).abs().max() for k in a)
    assert m2["train_loss"] == pytest.approx(m1["train_loss"], abs=1e-5)


ACCELERATE = [str(Path(sys.executable).parent / "accelerate"), "launch"]


def one_and_two_processes(tmp_path, launcher, processes=2):
    """Two stage projects on the same 8 examples: `one` is trained in one process with batch 8; `two` (train.launcher
    `launcher`, batch 8 / `processes` per process) is left for the caller to launch."""
    train = {"max_steps": 3, "lora": {"dropout": 0.0}, "learning_rate": 5e-3}
    one = stage_project(tmp_path / "one", batch_size=8, **train)
    two = stage_project(tmp_path / "two", batch_size=8 // processes, launcher=launcher, **train)
    for root in (one, two):
        write_records(root / "data/train/original.jsonl", learnable(8))
    subprocess.run([sys.executable, str(ROOT / "stages/train.py"), "tiny", "original", "0"], cwd=one,
                   env=stage_env(), check=True, capture_output=True)
    return one, two


def test_accelerate_launch_ddp_on_cpu_processes_trains_the_adapter_of_one_process(tmp_path):
    """train.launcher `accelerate launch --multi_gpu --num_processes 2`: on CPU, accelerate runs torch.distributed
    (gloo) under that flag's name, and 2 processes x batch 4 give the adapter of 1 process x batch 8."""
    launcher = "accelerate launch --multi_gpu --num_processes 2"
    one, two = one_and_two_processes(tmp_path, launcher)
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
def test_fsdp_through_accelerate_saves_the_adapter_of_one_process(tmp_path):
    """Every rank takes part in the save (the full state dict is gathered), and the adapter equals one process's."""
    n = min(2, torch.cuda.device_count())
    one, two = one_and_two_processes(tmp_path, f"accelerate launch --use_fsdp --num_processes {n}", n)
    proc = subprocess.run([*ACCELERATE, "--use_fsdp", "--num_processes", str(n), str(ROOT / "stages/train.py"),
                           "tiny", "original", "0"], cwd=two, env=stage_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = adapter(one), adapter(two)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-3) for k in a)


def test_chat_format_trains_and_scores_through_the_chat_template(tmp_path, monkeypatch):
    """task.format chat end to end: the tokenizer's template wraps the prompt in training and in scoring."""
    from test_evaluate import CHAT_TEMPLATE

    import medaug.train as train_module

    real = train_module.load_model_and_tokenizer

    def with_template(ref):
        model, tok = real(ref)
        tok.chat_template = CHAT_TEMPLATE  # the tiny tokenizer has none; instruction-tuned ones do
        return model, tok

    monkeypatch.setattr(train_module, "load_model_and_tokenizer", with_template)
    train_path = tmp_path / "original.jsonl"
    write_records(train_path, learnable(24))
    p = parse_params({"models": {"tiny": "tiny-llama"}, "task": {"max_seq_len": 64, "format": "chat"},
                      "train": {"models": ["tiny"], "batch_size": 4, "grad_accum": 1, "max_steps": 60,
                                "learning_rate": 1e-2, "warmup_ratio": 0.0, "checkpoints": str(tmp_path / "c")}})
    run(p, "tiny", "original", 0, train_path, tmp_path / "m", tmp_path / "metrics.json")
    model, tok = load_candidate(p, "tiny", tmp_path / "m")
    assert tok.chat_template == CHAT_TEMPLATE  # saved with the adapter, so scoring uses it too
    assert accuracy(model, tok, p, learnable(24)) == 1.0


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
