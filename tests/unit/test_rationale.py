"""The rationale target (a variant's `rationale` weight, Distilling step-by-step style): the explanation after its
own prompt is a second target in the same batch; the answer loss is untouched. Checked against per-example NLL
from full logits on tiny models, for padded and packed batches."""

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from medaug.data.schema import Record, write_records
from medaug.evaluate.task import collate, encode
from medaug.models.load import load_model_and_tokenizer
from medaug.params import parse_params
from medaug.paths import Candidate, TrainIO
from medaug.train import completion_loss, encode_rationale, run, with_rationale
from medaug.train.loop import pack

pytestmark = pytest.mark.usefixtures("tiny_cache")

RECORDS = [Record(id=f"r{i}", question=f"Did outcome {i} improve?", contexts=[f"We followed {10 + i} patients."],
                  final_decision=["yes", "no", "maybe"][i % 3],
                  long_answer="" if i == 2 else f"Because the {i} patients got better over the year.")
           for i in range(4)]  # r2 has no explanation: no rationale target


def params(**variant):
    return parse_params({"models": {"tiny": "tiny-llama"}, "task": {"max_seq_len": 64},
                         "variants": {"original": {}, "why": variant},
                         "train": {"models": ["tiny"], "variants": ["why"], "max_steps": 3, "warmup_ratio": 0.0,
                                   "learning_rate": 0.01}})


def full_nll(model, example) -> list[float]:
    """-log p of each completion token of one example alone: no padding, full logits."""
    ids = torch.tensor([example["input_ids"]])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return [-logprobs[j - 1, ids[0, j]].item() for j in range(example["n_prompt"], ids.shape[1])]


def examples(tok, p):
    out = [encode(tok, r, p.task, answer=r.final_decision) for r in RECORDS]
    for e, r in zip(out, RECORDS):
        e["rationale"] = encode_rationale(tok, r, p.task, p.train)
    return out


def test_the_rationale_target_is_the_explanation_after_its_own_prompt():
    p = params(rationale=0.5)
    _, tok = load_model_and_tokenizer("tiny-llama")
    e = encode_rationale(tok, RECORDS[0], p.task, p.train)
    prompt, completion = tok.decode(e["input_ids"][:e["n_prompt"]]), tok.decode(e["input_ids"][e["n_prompt"]:])
    assert prompt.rstrip().endswith("Question: Did outcome 0 improve?\nExplain the answer:")
    assert completion.strip() == RECORDS[0].long_answer
    assert encode_rationale(tok, RECORDS[2], p.task, p.train) is None
    short = dataclasses.replace(p.train, rationale_max_tokens=3)
    assert len(encode_rationale(tok, RECORDS[0], p.task, short)["input_ids"]) - e["n_prompt"] == 3


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_loss_is_the_answer_mean_plus_weight_times_the_explanation_mean(packed, weight):
    p = params(rationale=0.5)
    model, tok = load_model_and_tokenizer("tiny-llama")
    model.eval()
    base = pack if packed else (lambda b: collate(b, tok.pad_token_id))
    exs = examples(tok, p)
    answers = [t for e in exs for t in full_nll(model, e)]
    explanations = [t for e in exs if e["rationale"] for t in full_nll(model, e["rationale"])]
    batch = with_rationale(base, weight)(exs)
    with torch.no_grad():
        loss = completion_loss(model, batch).item()
        plain = completion_loss(model, base(exs)).item()  # no rationale targets at all
    want = sum(answers) / len(answers) + weight * sum(explanations) / len(explanations)
    assert loss == pytest.approx(want, abs=1e-4)
    assert plain == pytest.approx(sum(answers) / len(answers), abs=1e-4)  # the answer loss, as without rationales
    if weight == 0:
        assert loss == pytest.approx(plain, abs=1e-5)
    # the explanation tokens, and only they, carry the second target's weight
    w = batch["token_weight"].flatten()
    assert int((w > 0).sum()) == len(answers) + (len(explanations) if weight else 0)


def test_a_rationale_variant_trains_and_changes_the_adapter(tmp_path):
    write_records(tmp_path / "why.jsonl", RECORDS)
    outs = {}
    for weight in (0.0, 1.0):
        p = params(rationale=weight)
        out = tmp_path / f"w{weight}"
        run(p, Candidate("tiny", "why", 0), TrainIO(tmp_path / "why.jsonl", out, tmp_path / f"w{weight}.json"))
        outs[weight] = load_file(out / "adapter_model.safetensors")
    assert outs[0.0].keys() == outs[1.0].keys()
    assert any(not torch.equal(outs[0.0][k], outs[1.0][k]) for k in outs[0.0])
