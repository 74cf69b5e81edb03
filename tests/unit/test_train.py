"""Train stage: completion-only loss with logits only at the answer, packing, LoRA and full training, dev
evaluation with the best checkpoint kept, the chat format (tiny models, in process). The stage script killed and
resumed, and under launchers (torchrun, accelerate DDP/FSDP): tests/integration/test_train.py."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from medaug.data.schema import Record, write_records
from medaug.errors import MedaugError
from medaug.evaluate.scorer import Scorer
from medaug.evaluate.evaluate import load_candidate
from medaug.evaluate.task import collate, encode
from medaug.models.load import load_model_and_tokenizer
from medaug.params import parse_params
from medaug.paths import Candidate, TrainIO
from medaug.train import completion_loss, run
from medaug.train.loop import pack
from support.learnable import learnable
from support.models import CHAT_TEMPLATE


pytestmark = pytest.mark.usefixtures("tiny_cache")


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
    metrics = run(p, Candidate("tiny", "original", 0), TrainIO(train_path, out, metrics_path))
    assert json.loads(metrics_path.read_text()) == metrics
    assert metrics["n_train"] == 24 and metrics["steps"] == 60
    assert "train_runtime_s" not in metrics  # a wall time: MLflow's, never the report's (in git)
    meta = json.loads((out / "medaug.json").read_text())
    assert {k: meta[k] for k in ("base", "model", "variant", "seed", "method", "n_train")} == \
        {"base": "tiny-llama", "model": "tiny", "variant": "original", "seed": 0, "method": "lora", "n_train": 24}
    assert meta["precision"] == ("bf16" if torch.cuda.is_available() else "fp32")  # train.precision auto, resolved
    assert meta["train"] == {k: v for k, v in dataclasses.asdict(p.train).items()
                             if k not in ("models", "variants", "rounds", "seeds", "launcher")}  # no dep of a train stage
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
    metrics = run(p, Candidate("tiny", "augmented", 0), TrainIO(train_path, tmp_path / "m", tmp_path / "metrics.json"))
    assert metrics["n_train"] == 11 and metrics["steps"] == 2
    assert json.loads((tmp_path / "m" / "medaug.json").read_text())["variant"] == "augmented"
    # seeded: a second run gives the very same adapter
    run(p, Candidate("tiny", "augmented", 0), TrainIO(train_path, tmp_path / "again", tmp_path / "metrics-again.json"))
    first, second = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("m", "again"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    # another seed (train.seeds: [0, 1]) is another init and data order: another adapter, named by its seed
    run(p, Candidate("tiny", "augmented", 1), TrainIO(train_path, tmp_path / "seed1", tmp_path / "metrics-seed1.json"))
    other = load_file(tmp_path / "seed1" / "adapter_model.safetensors")
    assert not all(torch.equal(first[k], other[k]) for k in first)
    assert json.loads((tmp_path / "seed1" / "medaug.json").read_text())["seed"] == 1
    with pytest.raises(MedaugError, match="unknown variant"):
        run(p, Candidate("tiny", "zero-shot", 0), TrainIO(train_path, tmp_path / "m2", tmp_path / "metrics2.json"))


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
        run(p, Candidate("tiny", "original", 0), TrainIO(train_path, tmp_path / f"m{packing}",
                                                         tmp_path / f"m{packing}.json", plots=plots))
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
    metrics = run(p, Candidate("tiny", "original", 0), TrainIO(train_path, tmp_path / "m", tmp_path / "metrics.json",
                                                               dev_path, plots))
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
    run(p, Candidate("tiny", "original", 0), TrainIO(train_path, tmp_path / "m", tmp_path / "metrics.json"))
    assert (tmp_path / "m" / "config.json").exists() and not (tmp_path / "m" / "adapter_config.json").exists()
    model, tok = load_candidate(p, "tiny", tmp_path / "m")
    base, _ = load_model_and_tokenizer("tiny-llama")
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
    assert len(changed) > 10  # every layer moved, not only adapters


def test_chat_format_trains_and_scores_through_the_chat_template(tmp_path, monkeypatch):
    """task.format chat end to end: the tokenizer's template wraps the prompt in training and in scoring."""
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
    run(p, Candidate("tiny", "original", 0), TrainIO(train_path, tmp_path / "m", tmp_path / "metrics.json"))
    model, tok = load_candidate(p, "tiny", tmp_path / "m")
    assert tok.chat_template == CHAT_TEMPLATE  # saved with the adapter, so scoring uses it too
    assert accuracy(model, tok, p, learnable(24)) == 1.0
