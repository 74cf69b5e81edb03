"""Train stage: completion-only loss with logits only at the answer, LoRA training, outputs (tiny models)."""

import json

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
    metrics = run(p, "tiny", "original", train_path, out, metrics_path)
    assert json.loads(metrics_path.read_text()) == metrics
    assert metrics["n_train"] == 24 and metrics["steps"] == 60 and metrics["train_runtime_s"] > 0
    assert json.loads((out / "medaug.json").read_text()) == \
        {"base": "tiny-llama", "model": "tiny", "variant": "original", "n_train": 24}
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
    metrics = run(p, "tiny", "augmented", train_path, tmp_path / "m", tmp_path / "metrics.json")
    assert metrics["n_train"] == 11 and metrics["steps"] == 2
    assert json.loads((tmp_path / "m" / "medaug.json").read_text())["variant"] == "augmented"
    # seeded: a second run gives the very same adapter
    run(p, "tiny", "augmented", train_path, tmp_path / "again", tmp_path / "metrics-again.json")
    first, second = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("m", "again"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    with pytest.raises(MedaugError, match="unknown variant"):
        run(p, "tiny", "zero-shot", train_path, tmp_path / "m2", tmp_path / "metrics2.json")
