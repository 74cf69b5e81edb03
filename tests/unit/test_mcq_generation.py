"""The teacher writes and checks multiple-choice items (issue 15, part 3), in process: the filter's rules, dedup and
decontamination read stems and options, an exam task's generate params, and the structured-reply helpers. The
teacher itself (rewrite, new, grounded, judge, consistency against `support.openai_server.ExamTeacher` on
127.0.0.1): tests/integration/test_mcq_generation.py."""

from pathlib import Path

import pytest

from medaug.augment import strategies
from medaug.data.schema import Record
from medaug.errors import MedaugError
from medaug.filtering.rules import check_valid
from medaug.filtering.steps import STEPS, Context
from medaug.llm.structured import conform, fill, string_schema
from medaug.params import Params
from support.exam import exam

dedup, decontaminate = STEPS["dedup"], STEPS["decontaminate"]


def mc(rid: str, question: str, options: list[str], answer: str = "A", source: str = "original",
       contexts=(), parent_id=None) -> Record:
    return Record(id=rid, question=question, contexts=list(contexts), options=dict(zip("ABCD", options)),
                  final_decision=answer, source=source, parent_id=parent_id)


def test_rules_check_distinct_options_and_a_stem_that_gives_the_answer_away():
    p = Params().filter
    ok = mc("g", "Where does a glorp with blue fur live?", ["ice caverns", "lava fields", "marshes", "forests"])
    assert check_valid(ok, None, p) is None  # no context: an exam stem stands alone
    assert check_valid(mc("g", ok.question, ["Iron.", "iron", "zinc", "copper"]), None, p) == "duplicate_options"
    assert check_valid(mc("g", "Glorps live in ice caverns; where does a glorp live?", list(ok.options.values())),
                       None, p) == "answer_in_stem"
    # the stem names the answer and a distractor: not a giveaway
    both = mc("g", "Ice caverns or lava fields: where does a glorp live?", list(ok.options.values()))
    assert check_valid(both, None, p) is None
    label = Record(id="y", question="Does aspirin lower stroke risk?", contexts=[""], final_decision="yes")
    assert check_valid(label, None, p) == "empty_context"


def test_dedup_reads_stem_and_options_and_reordered_options_are_the_same_item():
    stem = "A glorp kept by Quib on Ombra has blue fur and hums. Where does it live?"
    texts = ["ice caverns", "lava fields", "floating marshes", "crystal forests"]
    train = [mc("t", stem, texts)]
    gen = [mc("g1", stem, texts[::-1], "D", "rewrite", parent_id="t"),  # only reordered
           mc("g2", stem, ["red", "green", "blue", "white"], "B", "new", parent_id="t"),  # other options
           mc("g3", "Which colour is a glorp's fur?", ["red", "green", "blue", "white"], "C", "new"),
           mc("g4", "Which colour is a glorp's fur?", ["white", "blue", "green", "red"], "B", "new")]
    ctx = Context(Params(), Path("."), train, [], [])
    # g4 is g3 reordered (another answer letter, yet the same item); g2 shares the stem but asks about other options
    assert dedup(gen, ctx) == {"g1": "duplicate_of_train", "g4": "near_duplicate"}


def test_decontamination_reads_the_options_too():
    test = [mc("x", "What do snibbets eat?", ["glowing moss from the northern caves of Vellomar", "stones", "rain",
                                              "nothing"])]
    gen = [mc("g", "Which food suits a snibbet best?", ["glowing moss from the northern caves of Vellomar", "sand",
                                                         "salt", "snow"], source="new"),
           mc("h", "Which food suits a glorp best?", ["moss", "sand", "salt", "snow"], source="new")]
    ctx = Context(Params(), Path("."), [], [], test)
    assert decontaminate(gen, ctx) == {"g": "test_overlap"}


# ---------------------------------------------------------------- params, prompts, replies


def test_an_exam_task_refuses_mesh_and_label_mix_and_takes_the_rest():
    assert exam().generate.strategies == ["rewrite", "new"]
    strategies.check(exam())
    with pytest.raises(MedaugError, match=r"generate.strategies has mesh: it picks parents by their MeSH headings "
                                          r".* task medqa \(src/medaug/tasks/medqa.yaml\) is multiple choice: use "):
        strategies.check(exam({"strategies": ["new", "mesh"]}))
    with pytest.raises(MedaugError, match="generate.label_mix is for label tasks"):
        exam({"label_mix": {"A": 1}})


def test_fill_is_one_pass_and_drops_the_context_line_of_a_standalone_stem():
    template = "Context: {context}\nQuestion: {question}\n{options}\nReply: {\"answer\": \"A\"}\n"
    assert fill(template, {"context": "", "question": "Q {context}?", "options": "A. x"}) == \
        'Question: Q {context}?\nA. x\nReply: {"answer": "A"}'
    assert fill(template, {"context": "c", "question": "Q?", "options": ""}).startswith("Context: c\nQuestion: Q?")


def test_an_enum_reply_is_read_in_any_case_and_spelled_as_the_enum_spells_it():
    letters = string_schema("answer", enums={"answer": list("ABCD")})
    assert conform({"answer": " b "}, letters) == {"answer": "B"}
    assert conform({"answer": "E"}, letters) == "bad_value_answer"
    labels = string_schema("answer", enums={"answer": ["yes", "no", "maybe"]})
    assert conform({"answer": "Yes"}, labels) == {"answer": "yes"}
