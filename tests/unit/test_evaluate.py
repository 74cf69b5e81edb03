"""Prompt encoding, the log-likelihood scorer, merged candidates, metrics and the evaluate stage (tiny models)."""

import json

import pytest
import torch

from medaug.data.schema import Record, write_records
from medaug.errors import MedaugError
from medaug.evaluate.scorer import Scorer
from medaug.evaluate.stats import bootstrap_ci, mcnemar, paired_delta_ci
from medaug.evaluate.metrics import compute_metrics
from medaug.evaluate.evaluate import load_candidate, run
from medaug.evaluate.task import encode, render_prompt
from medaug.models.load import load_model_and_tokenizer
from medaug.params import TaskParams, parse_params
from medaug.paths import Candidate, EvaluateIO
from support.models import CHAT_TEMPLATE, lora_adapter


pytestmark = pytest.mark.usefixtures("tiny_cache")


def records(n, start=0):
    """Varied lengths, so batches really are padded."""
    labels = ["yes", "no", "maybe"]
    return [Record(id=f"q{i}", question=f"Does treatment {i} reduce mortality in patients with heart failure?",
                   contexts=["We enrolled patients with chronic heart failure. " * (1 + i % 5),
                             f"Mortality was {'lower' if i % 2 else 'similar'} in the treated group."],
                   final_decision=labels[i % 3]) for i in range(start, start + n)]


def test_render_prompt_fills_both_fields_once():
    task = TaskParams(template="Q: {question}\nC: {context}\nA:")
    r = Record(id="1", question="Is {context} literal?", contexts=["a {question}", "b"], final_decision="yes")
    assert render_prompt(r, task) == "Q: Is {context} literal?\nC: a {question} b\nA:"


def test_encode_cuts_the_start_of_the_abstract_only():
    _, tok = load_model_and_tokenizer("tiny-llama")
    task = TaskParams(max_seq_len=48)
    long = Record(id="1", question="Does early mobilization reduce hospital stay?",
                  contexts=["THE START OF THE ABSTRACT " + "Patients were randomized to early mobilization. " * 30
                            + "Mobilization reduced the stay."], final_decision="yes")
    enc = encode(tok, long, task, answer="yes")
    assert enc["n_prompt"] <= 48 and enc["n_prompt"] >= 40
    prompt = tok.decode(enc["input_ids"][:enc["n_prompt"]])
    assert prompt.startswith("Abstract: ")
    assert prompt.endswith("Mobilization reduced the stay.\nQuestion: Does early mobilization reduce hospital stay?"
                           "\nAnswer:")
    assert "THE START" not in prompt
    assert enc["input_ids"][enc["n_prompt"]:] == tok(" yes", add_special_tokens=False).input_ids
    short = Record(id="2", question="Is it?", contexts=["Short."], final_decision="no")
    enc = encode(tok, short, task)
    assert tok.decode(enc["input_ids"]) == render_prompt(short, task) and enc["n_prompt"] == len(enc["input_ids"])


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_batched_left_padded_scoring_equals_one_by_one(name):
    model, tok = load_model_and_tokenizer(name)
    task = TaskParams()
    recs = records(7)
    batched = Scorer(model, tok, task, batch_size=4).predict(recs, progress=False)
    single = Scorer(model, tok, task, batch_size=1).predict(recs, progress=False)
    assert [b["id"] for b in batched] == [r.id for r in recs]
    for b, s in zip(batched, single):
        assert b["prediction"] == s["prediction"]
        for c in ("yes", "no", "maybe"):
            assert b["logprobs"][c] == pytest.approx(s["logprobs"][c], abs=1e-4)
    # the model really scores the prompt (different questions, different log-probs)
    assert len({round(b["logprobs"]["yes"], 4) for b in batched}) > 1


def test_batches_are_cut_from_prompts_sorted_by_length_and_answers_keep_the_records_order(monkeypatch):
    """Similar lengths share a batch (less padding: in file order PubMedQA's batches of 8 are ~40% padding), and
    the answers still come back in the records' order, equal to one-by-one scoring."""
    model, tok = load_model_and_tokenizer("tiny-llama")
    scorer = Scorer(model, tok, TaskParams(), batch_size=3)
    recs = records(8)
    lengths = {r.id: len(encode(tok, r, TaskParams())["input_ids"]) for r in recs}
    seen, real = [], scorer._single_token
    monkeypatch.setattr(scorer, "_single_token", lambda prompts: seen.append([len(p["input_ids"]) for p in prompts])
                        or real(prompts))
    out = scorer.predict(recs, progress=False)
    assert [o["id"] for o in out] == [r.id for r in recs]
    flat = [n for batch in seen for n in batch]
    assert flat == sorted(lengths.values()) and flat != [lengths[r.id] for r in recs]  # sorted, not file order
    single = Scorer(model, tok, TaskParams(), batch_size=1).predict(recs, progress=False)
    assert [o["prediction"] for o in out] == [s["prediction"] for s in single]


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_single_token_fast_path_equals_general_path(name):
    model, tok = load_model_and_tokenizer(name)
    fast = Scorer(model, tok, TaskParams(), batch_size=3)
    general = Scorer(model, tok, TaskParams(), batch_size=3)
    assert fast.single_token
    general.single_token = False
    a, b = fast.predict(records(5), progress=False), general.predict(records(5), progress=False)
    for x, y in zip(a, b):
        assert x["prediction"] == y["prediction"]
        for c in ("yes", "no", "maybe"):
            assert x["logprobs"][c] == pytest.approx(y["logprobs"][c], abs=1e-4)


def test_merged_model_saved_and_reloaded_predicts_identically(tmp_path):
    p = parse_params({"models": {"tiny": "tiny-llama"}, "train": {"models": ["tiny"]}})
    adapter = lora_adapter("tiny-llama", tmp_path / "adapter")
    merged, tok = load_candidate(p, "tiny", adapter)
    assert not hasattr(merged, "peft_config")  # plain transformers model, ready for save_pretrained / MLflow
    merged.save_pretrained(tmp_path / "merged")
    tok.save_pretrained(tmp_path / "merged")
    reloaded, tok2 = load_model_and_tokenizer(str(tmp_path / "merged"))
    recs = records(6)
    before = Scorer(*load_candidate(p, "tiny", None), p.task, 4).predict(recs, progress=False)
    after_merge = Scorer(merged, tok, p.task, 4).predict(recs, progress=False)
    after_reload = Scorer(reloaded, tok2, p.task, 4).predict(recs, progress=False)
    merged_sd, reloaded_sd = merged.state_dict(), reloaded.state_dict()
    assert merged_sd.keys() == reloaded_sd.keys()
    assert all(torch.equal(merged_sd[k], reloaded_sd[k]) for k in merged_sd)
    assert [a["prediction"] for a in after_merge] == [a["prediction"] for a in after_reload]
    for a, b in zip(after_merge, after_reload):  # same weights; matmul kernels may differ in the last bit
        assert a["logprobs"] == pytest.approx(b["logprobs"], abs=1e-5)
    assert [b["logprobs"] for b in before] != [a["logprobs"] for a in after_merge]  # the adapter did something


def test_metrics_hand_computed():
    golds = ["yes", "yes", "yes", "no", "no", "maybe"]
    preds = ["yes", "yes", "no", "no", "yes", "yes"]
    m = compute_metrics(golds, preds)
    # yes: tp 2, pred 4, gold 3 -> P 1/2, R 2/3, F1 4/7; no: tp 1, pred 2, gold 2 -> F1 1/2; maybe: F1 0
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["macro_f1"] == pytest.approx((4 / 7 + 1 / 2 + 0) / 3)
    assert m["n"] == 6
    assert m["per_class"]["yes"] == {"gold": 3, "predicted": 4, "correct": 2, "precision": pytest.approx(1 / 2),
                                     "recall": pytest.approx(2 / 3), "f1": pytest.approx(4 / 7)}
    assert m["per_class"]["no"] == {"gold": 2, "predicted": 2, "correct": 1, "precision": 0.5, "recall": 0.5,
                                    "f1": 0.5}
    assert m["per_class"]["maybe"]["predicted"] == 0
    # a class absent from both gold and predictions counts as F1 0 (sklearn, zero_division=0)
    assert compute_metrics(["yes", "no"], ["yes", "no"])["macro_f1"] == pytest.approx(2 / 3)
    assert compute_metrics(["yes"], ["no"])["macro_f1"] == 0.0


def test_evaluate_stage_writes_predictions_confusion_and_metrics(tmp_path):
    p = parse_params({"models": {"tiny": "tiny-gpt2"}, "train": {"models": ["tiny"]}, "evaluate": {"bootstrap": 200}})
    test = tmp_path / "test.jsonl"
    write_records(test, records(5))
    adapter = lora_adapter("tiny-gpt2", tmp_path / "adapter")
    zero_shot_path = tmp_path / "eval" / "zero-shot" / "predictions.jsonl"
    results, metrics_of = {}, {}
    for variant, adapter_dir in (("zero-shot", None), ("augmented", adapter)):
        out, metrics_path = tmp_path / "eval" / variant, tmp_path / "metrics" / f"{variant}.json"
        confusion_path = tmp_path / "plots" / f"{variant}.json"
        per_class_path = tmp_path / "plots" / "per_class" / f"{variant}.json"
        metrics = run(p, Candidate("tiny", variant, None if variant == "zero-shot" else 0),
                      EvaluateIO(test, out, metrics_path, confusion_path, per_class_path, adapter_dir, zero_shot_path))
        assert json.loads(metrics_path.read_text()) == metrics
        assert {k: metrics[k] for k in ("n", "model", "variant", "base")} == \
            {"n": 5, "model": "tiny", "variant": variant, "base": "tiny-gpt2"}
        rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        assert [r["id"] for r in rows] == [f"q{i}" for i in range(5)]
        assert [r["gold"] for r in rows] == [r.final_decision for r in records(5)]
        assert all(r["prediction"] == max(r["logprobs"], key=r["logprobs"].get) for r in rows)
        # PubMedQA's official format, in test-split order like test_ground_truth.json
        assert list(json.loads((out / "predictions.json").read_text()).items()) == \
            [(r["id"], r["prediction"]) for r in rows]
        confusion = json.loads(confusion_path.read_text())
        assert confusion == [{"actual": r["gold"], "predicted": r["prediction"]} for r in rows]
        assert metrics["accuracy"] == pytest.approx(sum(r["gold"] == r["prediction"] for r in rows) / 5)
        seeded = [] if variant == "zero-shot" else ["seed"]
        assert list(metrics) == ["accuracy", "macro_f1", "n", "ci95", "model", "variant", *seeded, "base"] + \
            (["vs_zero_shot"] if variant != "zero-shot" else []) + ["per_class"]
        for key in ("accuracy", "macro_f1"):
            assert metrics["ci95"][key]["low"] <= metrics[key] <= metrics["ci95"][key]["high"]
        golds_ = [r["gold"] for r in rows]
        assert metrics["ci95"] == bootstrap_ci(golds_, [r["prediction"] for r in rows], 200, 0, method="bca")
        assert json.loads(per_class_path.read_text()) == [
            {"class": c, "precision": metrics["per_class"][c]["precision"],
             "recall": metrics["per_class"][c]["recall"], "f1": metrics["per_class"][c]["f1"]}
            for c in ("yes", "no", "maybe")]
        results[variant], metrics_of[variant] = rows, metrics
    assert results["zero-shot"] != results["augmented"]
    vs = metrics_of["augmented"]["vs_zero_shot"]
    golds = [r["gold"] for r in results["augmented"]]
    test_ = mcnemar(golds, *([r["prediction"] for r in results[v]] for v in ("augmented", "zero-shot")))
    assert vs == {"p_value": test_["p_value"], "a_only": test_["a_only"], "b_only": test_["b_only"],
                  "delta_accuracy": pytest.approx(metrics_of["augmented"]["accuracy"]
                                                  - metrics_of["zero-shot"]["accuracy"]),
                  "delta_ci95": paired_delta_ci(golds, *([r["prediction"] for r in results[v]]
                                                         for v in ("augmented", "zero-shot")), 200, 0)}
    assert vs["delta_ci95"]["low"] <= vs["delta_accuracy"] <= vs["delta_ci95"]["high"]
    # no bootstrap: no ci95
    p0 = parse_params({"models": {"tiny": "tiny-gpt2"}, "train": {"models": ["tiny"]}, "evaluate": {"bootstrap": 0}})
    assert "ci95" not in run(p0, Candidate("tiny", "zero-shot"), EvaluateIO(
        test, tmp_path / "eval" / "z0", tmp_path / "z0.json", tmp_path / "c0.json", tmp_path / "pc0.json"))
    x = (test, tmp_path / "eval" / "x", tmp_path / "x.json", tmp_path / "c.json", tmp_path / "pc.json")
    with pytest.raises(MedaugError, match="needs its adapter"):
        run(p, Candidate("tiny", "original", 0), EvaluateIO(*x))
    with pytest.raises(MedaugError, match="medaug.json missing"):
        run(p, Candidate("tiny", "original", 0), EvaluateIO(*x, tmp_path / "eval"))
    # the zero-shot baseline must be there and score the same test items
    with pytest.raises(MedaugError, match=r"missing\.jsonl: not found; run `dvc repro zero-shot@tiny`"):
        run(p, Candidate("tiny", "augmented", 0), EvaluateIO(*x, adapter, tmp_path / "missing.jsonl"))
    write_records(test, records(4))
    with pytest.raises(MedaugError, match=r"predictions\.jsonl: its 5 ids are not the 4 test ids, in order; run "
                                          r"`dvc repro zero-shot@tiny`"):
        run(p, Candidate("tiny", "augmented", 0), EvaluateIO(*x, adapter, zero_shot_path))


def test_chat_format_puts_the_prompt_in_a_user_turn_and_the_answer_in_the_reply():
    _, tok = load_model_and_tokenizer("tiny-llama")
    record = records(1)[0]
    plain, chat = TaskParams(), TaskParams(format="chat")
    with pytest.raises(MedaugError, match="task.format: chat, but the tokenizer .* has no chat template"):
        encode(tok, record, chat, answer="no")
    tok.chat_template = CHAT_TEMPLATE
    e = encode(tok, record, chat, answer="no")
    text = f"<|user|>{render_prompt(record, plain)}\n<|assistant|>"
    assert e["input_ids"][:e["n_prompt"]] == tok.apply_chat_template(
        [{"role": "user", "content": render_prompt(record, plain)}], add_generation_prompt=True, tokenize=True,
        return_dict=False)
    assert tok.decode(e["input_ids"][:e["n_prompt"]], skip_special_tokens=True).endswith("<|assistant|>")
    assert text.endswith(tok.decode(e["input_ids"][:e["n_prompt"]], skip_special_tokens=True)[-40:])
    assert e["input_ids"][e["n_prompt"]:] == tok("no", add_special_tokens=False).input_ids  # no leading space
    # plain: the answer follows the text with a space, as lm-eval writes it
    p = encode(tok, record, plain, answer="no")
    assert p["input_ids"][p["n_prompt"]:] == tok(" no", add_special_tokens=False).input_ids


def test_compare_zero_shot_gives_the_paired_delta_interval_only_with_resamples():
    from medaug.evaluate.evaluate import compare_zero_shot
    recs = records(6)
    golds = [r.final_decision for r in recs]
    worse = [g if i < 3 else ("no" if g == "yes" else "yes") for i, g in enumerate(golds)]
    vs = compare_zero_shot(recs, golds, worse, 300, 4, "percentile")
    assert vs == {"p_value": mcnemar(golds, golds, worse)["p_value"], "a_only": 3, "b_only": 0,
                  "delta_accuracy": 0.5, "delta_ci95": paired_delta_ci(golds, golds, worse, 300, 4, method="percentile")}
    assert 0 <= vs["delta_ci95"]["low"] < 0.5 < vs["delta_ci95"]["high"] <= 1
    assert "delta_ci95" not in compare_zero_shot(recs, golds, worse)  # evaluate.bootstrap 0: no interval


def test_the_task_examples_are_answered_as_the_test_record_they_copy(tmp_path):
    """A task file's `examples` (the served model's input format) get the candidate's answers in its report: an
    example asking exactly what a test record asks gets that record's prediction; one the served model would
    refuse stops the stage naming the task file."""
    from dataclasses import replace

    from medaug.tracking.pyfunc import model_input

    test = tmp_path / "test.jsonl"
    write_records(test, records(5))
    p = parse_params({"models": {"tiny": "tiny-gpt2"}, "train": {"models": ["tiny"]}, "evaluate": {"bootstrap": 0}})
    asked = [model_input(r) for r in records(5)[::-1]]  # in another order than the test split, and batched apart
    p.task = replace(p.task, examples=asked)
    io = EvaluateIO(test, tmp_path / "eval", tmp_path / "m.json", tmp_path / "c.json", tmp_path / "pc.json")
    report = run(p, Candidate("tiny", "zero-shot"), io)
    preds = json.loads((tmp_path / "eval" / "predictions.json").read_text())
    assert [e["input"] for e in report["examples"]] == asked
    assert [e["prediction"] for e in report["examples"]] == [preds[f"q{i}"] for i in range(4, -1, -1)]
    assert len(set(preds.values())) > 1  # the check above can tell the records apart
    assert json.loads((tmp_path / "m.json").read_text())["examples"] == report["examples"]

    p.task = replace(p.task, file="my-task.yaml", examples=[{**asked[0], "options": {"A": "x", "B": "y"}}])
    with pytest.raises(MedaugError, match=r"^my-task.yaml: examples: row 0: this model answers yes/no/maybe; "
                                          r"it takes no `options`"):
        run(p, Candidate("tiny", "zero-shot"), io)
