"""The few-shot teacher baseline (evaluate-teacher): lenient answer parsing, seeded balanced shots, the prompt. A run
against a real OpenAI-compatible server on 127.0.0.1: tests/integration/test_teacher_baseline.py."""

import re
from collections import Counter

import pytest

from medaug.data.schema import Record
from medaug.evaluate.teacher_baseline import build_prompt, parse_answer, pick_shots
from support.records import train_records


@pytest.mark.parametrize("reply, label", [
    ('{"answer": "yes"}', "yes"),
    ('{"answer": "No"}', "no"),
    ('{"answer": " maybe. "}', "maybe"),
    ('```json\n{"answer": "maybe"}\n```', "maybe"),
    ('Sure! Here is my reply: {"answer": "no"} Hope this helps, yes.', "no"),  # the JSON answer decides
    ('{"answer": "yes"', "yes"),                                              # cut at max_new_tokens
    ("Yes.", "yes"),
    ("Answer: Yes.", "yes"),
    ("**No**, because the trial found no difference.", "no"),
    ("I think maybe: the results are mixed.", "maybe"),
    ("MAYBE", "maybe"),
    ("garbage", None),
    ("", None),
    ("yesterday the nobody knew", None),       # words that merely start with a label
    ("no-one can tell", None),
    ('{"answer": "unclear"} but yes', None),   # a JSON answer that holds no label is not rescued by the chatter
    ('{"verdict": "no"}', "no"),               # JSON without "answer": the first standalone word
])
def test_parse_answer(reply, label):
    assert parse_answer(reply) == label
    assert parse_answer(None) is None


def test_pick_shots_is_seeded_balanced_and_takes_only_train_records():
    train = train_records()
    ids = {r.id for r in train}
    shots = pick_shots(train, 3, seed=0)
    assert sorted(s.final_decision for s in shots) == ["maybe", "no", "yes"]
    assert [s.id for s in pick_shots(list(reversed(train)), 3, seed=0)] == [s.id for s in shots]  # order-free
    assert {tuple(s.id for s in pick_shots(train, 3, seed)) for seed in range(20)} != {tuple(s.id for s in shots)}
    six = pick_shots(train, 6, seed=1)  # only one maybe: the rest round-robin over yes and no
    assert Counter(s.final_decision for s in six) == {"yes": 3, "no": 2, "maybe": 1}
    assert len({s.id for s in six}) == 6 and {s.id for s in six} <= ids
    assert pick_shots(train, 0, seed=0) == [] and len(pick_shots(train, 50, seed=0)) == len(train)


def test_build_prompt_shows_the_shots_with_their_labels_and_the_task_last_blind():
    shots = pick_shots(train_records(), 3, seed=0)
    rec = Record(id="t", question="Is {context} literal?", contexts=["An abstract about {shots}."], final_decision="no")
    prompt = build_prompt(shots, rec)
    head, task = prompt.split("### Task")
    assert prompt.startswith("Answer a research question") and prompt.endswith("\nReply:")
    for s in shots:
        assert f"Abstract: {s.context}\nQuestion: {s.question}\nReply: {{\"answer\": \"{s.final_decision}\"}}" in head
    assert task == "\nAbstract: An abstract about {shots}.\nQuestion: Is {context} literal?\nReply:"
    assert build_prompt(shots, train_records()[0]).split("### Task")[0] == head  # one shared prefix
    assert parse_answer(re.findall(r"^Reply: (.*)$", head, re.MULTILINE)[0]) == shots[0].final_decision
