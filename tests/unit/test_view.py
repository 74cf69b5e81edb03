"""`medaug view`'s rows and its --rev diff on hand-made project files (medaug.view); the page in headless Chromium
on a built pipeline: tests/dag/test_view.py."""

import json

import numpy as np
import pytest

from medaug.errors import MedaugError
from medaug.view import build, changes, items, workspace


def write(root, path, rows):
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def item(i, question, answer="yes", source="rewrite", parent="p1", **extra):
    return {"id": i, "question": question, "contexts": ["c"], "final_decision": answer, "source": source,
            "parent_id": parent, "teacher": {"model": "t"}, **extra}


QUESTION = "Is it </script><script>alert(1)</script> clear?"  # a teacher's text is data, never markup


@pytest.fixture
def project(tmp_path):
    # json.dumps leaves U+2028 as it is, and PubMedQA abstracts hold it: a reader that splits at it breaks lines
    write(tmp_path, "data/prepared/train.jsonl", [item("p1", "Is the parent question clear?", source="original",
                                                       long_answer="Yes.\u2028Line two."),
                                                  item("p2", "Does the other parent hold?", "no", "original")])
    write(tmp_path, "data/generated/rejects.jsonl",
          [{"id": "g1", "parent_id": "p2", "strategy": "new", "teacher": "t", "reason": "missing_answer"}])
    write(tmp_path, "data/generated/generated.jsonl", [item("a", QUESTION), item("b", "Does it hold?", "no")])
    write(tmp_path, "data/filtered/kept.jsonl", [item("a", QUESTION)])
    write(tmp_path, "data/filtered/rejects.jsonl",
          [item("b", "Does it hold?", "no", reject_step="dedup", reject_reason="duplicate_of_train")])
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/funnel.json").write_text(json.dumps({"in": 3, "kept": 1, "steps": {}}))
    (tmp_path / "reports/generate.json").write_text(json.dumps(
        {"by_strategy": {"rewrite": {"requested": 2}, "new": {"requested": 1}},
         "cost_usd_by_source": {"rewrite": {"t": 0.5}, "new": {"t": 0.2}}}))
    return tmp_path


def test_a_row_per_item_asked_for_with_its_fate_parent_and_cost(project):
    rows = {r["id"]: r for r in items(workspace(project))}
    assert set(rows) == {"g1", "a", "b"}
    assert (rows["g1"]["fate"], rows["g1"]["step"], rows["g1"]["reason"]) == ("dropped", "generate", "missing_answer")
    assert (rows["b"]["step"], rows["b"]["reason"]) == ("dedup", "duplicate_of_train")
    assert rows["a"]["fate"] == "kept" and rows["a"]["parent"] == "Is the parent question clear?"
    assert rows["g1"]["parent"] == "Does the other parent hold?" and rows["g1"]["strategy"] == "new"
    assert rows["a"]["usd"] == 0.25 and rows["g1"]["usd"] == 0.2  # the strategy's cost over its requests
    page, rows, _ = build(project, with_profile=False)  # the profile (MiniLM): the last test, the DAG tier
    assert len(rows) == 3 and "Is the parent question clear?" in page
    assert page.count("</script>") == 4 and "<\\/script><script>alert(1)<\\/script>" in page  # 3 JSON blocks, 1 script


def test_rows_that_disagree_with_the_funnel_fail_with_the_fix(project):
    (project / "reports/funnel.json").write_text(json.dumps({"in": 4, "kept": 1, "steps": {}}))
    with pytest.raises(MedaugError, match="in = 4, but data/ holds 3 items"):
        build(project, with_profile=False)
    (project / "data/filtered/kept.jsonl").unlink()
    with pytest.raises(MedaugError, match=r"data/filtered/kept.jsonl: not found; run `dvc repro filter`"):
        items(workspace(project))


def test_changes_are_the_items_added_removed_or_with_another_fate_or_text():
    def row(i, fate="kept", step="", reason="", q="q", a="yes"):
        return {"id": i, "fate": fate, "step": step, "reason": reason, "strategy": "new", "answer": a,
                "question": q}

    before = [row("same"), row("gone"), row("flip"), row("moved", "dropped", "dedup", "dup"), row("text")]
    after = [row("same"), row("new"), row("flip", "dropped", "validate", "too_long"),
             row("moved", "dropped", "judge", "low_score"), row("text", q="q2", a="no")]
    got = {c["id"]: c for c in changes(before, after)}
    assert set(got) == {"gone", "new", "flip", "moved", "text"}
    assert (got["gone"]["change"], got["gone"]["before"], got["gone"]["after"]) == ("removed", "kept", "")
    assert (got["new"]["change"], got["new"]["before"]) == ("added", "")
    assert (got["flip"]["before"], got["flip"]["after"]) == ("kept", "dropped at validate: too_long")
    assert got["moved"]["change"] == "fate" and got["moved"]["before"] == "dropped at dedup: dup"
    assert got["text"]["change"] == "text" and got["text"]["answer"] == "yes → no"


def test_the_profile_measures_diversity_novelty_lengths_answers_and_rewrite_cosine():
    from medaug import headline
    from medaug.data.profile import COLUMNS, distinct, plot, profile, table

    assert distinct(["a b a b"], 1) == 0.5 and distinct(["a b a b"], 2) == round(2 / 3, 4)
    axes = {"t1": [1, 0, 0], "t2": [0, 1, 0], "copy": [1, 0, 0], "far": [0, 0, 1], "p1": [1, 0, 0]}

    def embed(texts):  # each question a unit axis: cosines of 0 or 1
        return np.array([axes[t.split()[0]] for t in texts], dtype=np.float32)

    train = [{"id": "p1", "question": "t1 is it", "final_decision": "yes"},
             {"id": "p2", "question": "t2 does it", "final_decision": "no"}]
    gen = [{"id": "a", "question": "copy is it", "final_decision": "yes", "source": "rewrite", "parent_id": "p1",
            "teacher": {"model": "m"}},
           {"id": "b", "question": "far away now", "final_decision": "no", "source": "rewrite", "parent_id": "p1",
            "teacher": {"model": "m"}}]
    prof = profile(train, gen, {"a"}, embed=embed)
    assert prof["train"]["novelty"] == 1.0 and prof["train"]["answers"] == {"no": 0.5, "yes": 0.5}
    generated, kept = prof["groups"]
    assert (generated["stage"], generated["n"], kept["n"]) == ("generated", 2, 1)
    assert generated["novelty"] == 0.5 and kept["novelty"] == 0.0  # "copy" sits on a train question
    assert generated["spread"] == 1.0 and kept["spread"] is None
    assert generated["words"] == {"mean": 3.0, "p90": 3} and generated["distinct_1"] == 1.0
    assert [r["fidelity_cosine"] for r in prof["rewrites"]] == [1.0, 0.0]
    assert generated["fidelity_cosine"] == 0.5 and kept["fidelity_cosine"] == 1.0
    assert generated["distinct_2_train"] == 1.0  # two train questions share no bigram
    assert generated["distinct_2_vs_train"] == round(generated["distinct_2"] / 1.0, 4)
    # all kept items together: the headline (metrics/profile.json), the table and the plot's rows
    assert (prof["kept"]["n"], prof["kept"]["novelty"], prof["kept"]["fidelity_cosine"]) == (1, 0.0, 1.0)
    assert headline.profile(prof) == {"novelty": 0.0, "distinct_2_vs_train": prof["kept"]["distinct_2_vs_train"],
                                      "fidelity_cosine": 1.0}
    rows = table(prof)
    assert [r[:2] for r in rows] == [("train split", "2"), ("rewrite · m · generated", "2"),
                                     ("rewrite · m · kept", "1"), ("all kept", "1")]
    assert all(len(r) == len(COLUMNS) for r in rows) and rows[2][-1] == "1.000" and rows[0][-1] == "–"
    assert [(r["group"], r["novelty"]) for r in plot(prof)] == [("train split", 1.0), ("rewrite · m · generated", 0.5),
                                                                ("rewrite · m · kept", 0.0), ("all kept", 0.0)]
    # a recipe's training set: the profile of the generated items it trains on; one with none is left out
    per = profile(train, gen, {"a"}, embed=embed, recipes={"mix": train + gen[1:], "original": train})["recipes"]
    assert [(r["recipe"], r["n"], r["novelty"]) for r in per] == [("mix", 1, 1.0)]
    assert table({**prof, "recipes": per})[-1][:2] == ("recipe mix", "1")
    assert plot({**prof, "recipes": per})[-1]["group"] == "recipe mix"
    assert profile(train, [], set(), embed=embed)["kept"]["n"] == 0  # nothing generated: a profile, no error
    assert headline.profile(profile(train, [], set(), embed=embed)) == {}  # and no number that means nothing


def test_distinct_at_the_same_size_is_the_fair_reference():
    from medaug.data.profile import distinct, same_size

    questions = [f"is drug {i} safe" for i in range(50)]  # "is drug" and "safe" repeat: distinct falls with n
    assert distinct(questions[:2], 2) > distinct(questions, 2)
    assert same_size(questions, 2) == distinct(questions[:2], 2) and same_size(questions, 50) == distinct(questions, 2)
    assert same_size(questions, 0) is None
