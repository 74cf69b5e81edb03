"""Tasks as data (issue 15): task files, multiple-choice prompts and scoring, the exam splits, option shuffling,
the teacher baseline's letters. The whole DAG on the bundled MedQA-schema sample: tests/test_tasks.py (the dag
tier)."""

import json
import re
from collections import Counter

import pytest
import yaml

from medaug.data import prepare
from medaug.data.schema import Record, read_records, shuffle_options
from medaug.errors import MedaugError
from medaug.evaluate.scorer import Scorer
from medaug.evaluate.task import encode, render_prompt
from medaug.evaluate.teacher_baseline import build_prompt, parse_answer, pick_shots
from medaug.models.load import load_model_and_tokenizer
from medaug.params import TaskParams, load_params, parse_params
from support.exam import MEDQA, MEDQA_SAMPLE
from support.paths import ROOT

ITEM = Record(id="m1", question="A glorp has blue fur. Where does it live?", contexts=[],
              options={"A": "ice caverns", "B": "lava fields", "C": "floating marshes", "D": "crystal forests"},
              final_decision="A")


EXAM = {"generate": {"strategies": []}, "filter": {"steps": ["validate", "dedup", "decontaminate"]},
        "train": {"variants": ["original"]}}
"""An exam task with no teacher-written items (tests/*/test_mcq_generation.py have the teacher's side)."""


def mcq(path: str = MEDQA, **task) -> TaskParams:
    return parse_params({"task": {"file": path, **task}, **EXAM}, ROOT).task


# ---------------------------------------------------------------- task files

def test_the_shipped_pubmedqa_task_file_is_the_default_task():
    shipped = parse_params({"task": {"file": "src/medaug/tasks/pubmedqa.yaml"}}, ROOT).task
    assert {**vars(shipped), "description": "", "examples": []} == vars(TaskParams())  # the two the file adds
    assert shipped.examples  # the docs' serving example (docs/shipping.md)
    assert load_params(ROOT / "params.yaml").task.template == TaskParams().template


def test_exam_task_files_load_with_their_split_and_letters():
    for name, test_split in (("medqa", "test"), ("medmcqa", "validation")):
        task = mcq(f"src/medaug/tasks/{name}.yaml")
        assert (task.name, task.answer, task.choices) == (name, "options", ["A", "B", "C", "D"])
        assert (task.split.kind, task.split.test) == ("given", test_split)
        assert "{options}" in task.template


@pytest.mark.parametrize("spec, params, fragment", [
    (None, {"file": "nope.yaml"}, "task.file = 'nope.yaml': file not found"),
    ({"name": "x", "temperature": 1}, {}, "t.yaml: unknown key 'temperature'"),
    ({"answer": "options", "choices": ["A", "B"], "template": "Q: {question}\nAnswer:"}, {},
     "t.yaml (task.file): task.template must contain {options}"),
    ({"choices": ["yes", "yes"]}, {}, "task.choices must be 2 or more distinct"),
    ({"answer": "letters"}, {}, "task.answer = 'letters' is not allowed (allowed: labels, options)"),
    ({"name": "x"}, {"template": "Q: {question}"}, "task.template comes from the task file (t.yaml)"),
    ({"name": "x"}, {"shuffle_options": True}, "shuffle_options is for multiple-choice tasks"),
])
def test_a_bad_task_file_or_key_names_the_file_and_key(tmp_path, spec, params, fragment):
    if spec is not None:
        (tmp_path / "t.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(MedaugError) as e:
        parse_params({"task": {"file": "t.yaml", **params}}, tmp_path)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_an_exam_task_checks_label_mix_against_its_letters():
    assert parse_params({"task": {"file": MEDQA}, **EXAM}, ROOT).task.answer == "options"
    with pytest.raises(MedaugError, match="label_mix is for label tasks"):
        parse_params({"task": {"file": MEDQA}, **EXAM, "generate": {"strategies": [], "label_mix": {"yes": 1}}},
                     ROOT)


# ---------------------------------------------------------------- records, prompts, scoring

def test_records_check_options_and_answer_letter(tmp_path):
    good = {"id": "1", "question": "Where?", "contexts": [], "final_decision": "B", "options": {"A": "x", "B": "y"}}
    bad = [({**good, "final_decision": "C"}, "unknown answer letter 'C' in 'final_decision' (allowed: A, B)"),
           ({**good, "options": {"A": "x", "B": " X "}}, "field 'options' has two identical options"),
           ({**good, "options": {"A": "x"}}, "field 'options' must map at least 2 letters"),
           ({**good, "options": None, "final_decision": "yes"}, "field 'contexts' must be a non-empty list")]
    for obj, fragment in bad:
        path = tmp_path / "r.jsonl"
        path.write_text(json.dumps(good) + "\n" + json.dumps({k: v for k, v in obj.items() if v is not None}) + "\n")
        with pytest.raises(MedaugError, match=re.escape(f"r.jsonl:2: {fragment}")):
            read_records(path)
    path.write_text(json.dumps({**good, "options": None, "contexts": ["c"], "final_decision": "probably"}) + "\n")
    assert read_records(path)[0].final_decision == "probably"  # no task named: any answer
    with pytest.raises(MedaugError, match="unknown label 'probably'"):
        read_records(path, ["yes", "no", "maybe"])


def test_options_prompt_is_lm_evals_and_the_answer_is_one_letter_token():
    task = mcq()
    assert render_prompt(ITEM, task) == ("Question: A glorp has blue fur. Where does it live?\nA. ice caverns\n"
                                         "B. lava fields\nC. floating marshes\nD. crystal forests\nAnswer:")
    model, tok = load_model_and_tokenizer("tiny-llama")
    enc = encode(tok, ITEM, task, answer="A")
    assert tok.decode(enc["input_ids"][enc["n_prompt"]:]) == " A"


@pytest.mark.usefixtures("tiny_cache")
def test_letters_are_scored_on_the_fast_path_and_equal_the_general_path():
    model, tok = load_model_and_tokenizer("tiny-llama")
    task = mcq()
    items = [shuffle_options(ITEM, s) for s in range(5)]
    fast, general = Scorer(model, tok, task, batch_size=2), Scorer(model, tok, task, batch_size=2)
    assert fast.single_token
    general.single_token = False
    a, b = fast.predict(items, progress=False), general.predict(items, progress=False)
    for x, y in zip(a, b):
        assert x["prediction"] == y["prediction"] and set(x["logprobs"]) == {"A", "B", "C", "D"}
        for c in "ABCD":
            assert x["logprobs"][c] == pytest.approx(y["logprobs"][c], abs=1e-4)
    # the options are in the prompt: other orders, other scores
    assert len({round(x["logprobs"]["A"], 5) for x in a}) > 1


def test_shuffled_options_keep_each_answer_with_its_text_and_spread_the_letters():
    items = [Record(id=f"i{i}", question="Q?", contexts=[], options=dict(ITEM.options), final_decision="A")
             for i in range(200)]
    shuffled = [shuffle_options(r, seed=0) for r in items]
    assert all(s.options[s.final_decision] == "ice caverns" for s in shuffled)
    assert all(sorted(s.options.values()) == sorted(ITEM.options.values()) for s in shuffled)
    letters = Counter(s.final_decision for s in shuffled)
    assert set(letters) == set("ABCD") and min(letters.values()) > 30
    assert [s.options for s in shuffled] == [shuffle_options(r, seed=0).options for r in items]  # seeded
    assert [s.options for s in shuffled] != [shuffle_options(r, seed=1).options for r in items]


# ---------------------------------------------------------------- exam splits

def exam_params(**task) -> object:
    return parse_params({"data": {"source": MEDQA_SAMPLE}, "task": {"file": MEDQA, **task}, **EXAM}, ROOT)


def test_prepare_splits_the_medqa_sample_official_test_and_a_seeded_dev(tmp_path):
    stats = prepare.run(exam_params(), ROOT, tmp_path / "a", tmp_path / "a.json")
    assert {k: v["total"] for k, v in stats.items()} == {"train": 96, "dev": 24, "test": 40}  # dev: a fifth of 120
    assert set(stats["test"]) == {"total", "A", "B", "C", "D"} and sum(stats["test"][c] for c in "ABCD") == 40
    train, dev, test = (read_records(tmp_path / "a" / f"{s}.jsonl", list("ABCD")) for s in ("train", "dev", "test"))
    assert not {r.id for r in train} & {r.id for r in dev}
    assert all(r.id.startswith("medqa-test-") for r in test)
    prepare.run(exam_params(), ROOT, tmp_path / "b", tmp_path / "b.json")
    assert (tmp_path / "a/dev.jsonl").read_bytes() == (tmp_path / "b/dev.jsonl").read_bytes()
    prepare.run(exam_params(shuffle_options=True), ROOT, tmp_path / "c", tmp_path / "c.json")
    moved = read_records(tmp_path / "c" / "test.jsonl")
    assert [r.options[r.final_decision] for r in moved] == [r.options[r.final_decision] for r in test]
    assert [r.final_decision for r in moved] != [r.final_decision for r in test]


def test_a_bad_exam_source_names_the_item(tmp_path):
    folder = tmp_path / "exam"
    folder.mkdir()
    row = {"question": "Q?", "options": {"A": "a", "B": "b", "C": "c"}, "answer_idx": "A", "answer": "a"}
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for _ in range(10)))
    with pytest.raises(MedaugError, match="item medqa-train-0 has the options A, B, C, the task medqa expects "
                                          "A, B, C, D"):
        prepare.run(parse_params({"data": {"source": "exam"}, "task": {"file": str(ROOT / MEDQA)}, **EXAM}),
                    tmp_path, tmp_path / "out", tmp_path / "m.json")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the teacher baseline in letters

@pytest.mark.parametrize("reply, letter", [
    ('{"answer": "B"}', "B"), ('{"answer": "C. floating marshes"}', "C"), ("The answer is D.", "D"),
    ("A glorp with blue fur lives in B", "B"),  # "A" the article is no answer
    ("B, because A is wrong", "B"), ("(C) floating marshes", "C"),
    ('{"answer": "E"}', None), ("no idea", None),
])
def test_teacher_replies_are_read_as_letters(reply, letter):
    assert parse_answer(reply, ["A", "B", "C", "D"]) == letter


def test_teacher_prompt_shows_the_options_and_shots_balance_letters():
    train = [shuffle_options(Record(id=f"t{i}", question=f"Q{i}?", contexts=[], options=dict(ITEM.options),
                                    final_decision="A"), 0) for i in range(40)]
    shots = pick_shots(train, 4, seed=0, labels=list("ABCD"))
    assert sorted(s.final_decision for s in shots) == ["A", "B", "C", "D"]
    prompt = build_prompt(shots, ITEM, "options")
    assert prompt.endswith("Question: A glorp has blue fur. Where does it live?\nA. ice caverns\nB. lava fields\n"
                           "C. floating marshes\nD. crystal forests\nReply:")
    assert prompt.count("### Example") == 4 and '{"answer": "B"}' in prompt and "yes" not in prompt
