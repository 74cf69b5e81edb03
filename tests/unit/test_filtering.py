"""The filter stage: its steps (validate, dedup, decontaminate, balance) in params order, and the funnel."""

import json
from collections import Counter

import pytest

from medaug import filtering
from medaug.data import prepare
from medaug.data.jsonl import write_jsonl
from medaug.data.schema import Record, read_records, write_records
from medaug.errors import MedaugError
from medaug.data.text import normalize, word_ngrams
from medaug.data.leakage import contamination_ngrams
from medaug.params import DataParams, Params
from medaug.paths import FilterIO
from support.paths import PUBMEDQA, needs_pqal


def gen(parent: Record, gid: str, question: str, source: str = "rewrite", contexts=None, label=None) -> Record:
    return Record(id=gid, question=question, contexts=contexts if contexts is not None else parent.contexts,
                  final_decision=label or parent.final_decision, long_answer="x", source=source,
                  parent_id=parent.id, teacher={"model": "m", "prompt_sha": "p", "request_sha": gid})


def rule_params() -> Params:
    p = Params()
    p.filter.steps = ["validate", "dedup", "decontaminate"]
    return p


def run_filter(tmp_path, prepared_dir, records, p=None):
    gen_path = tmp_path / "generated.jsonl"
    write_records(gen_path, records)
    out = tmp_path / "filtered"
    funnel = filtering.run(p or rule_params(), FilterIO(prepared_dir, gen_path, out / "kept.jsonl",
                                                        out / "rejects.jsonl", tmp_path / "funnel.json",
                                                        plot=tmp_path / "plot.json"))
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    return funnel, read_records(out / "kept.jsonl"), {r["id"]: r["reject_reason"] for r in rejects}


def test_funnel_keeps_good_items_and_drops_each_reason(tmp_path, prepared):
    train, test = prepared["train"], prepared["test"]
    t0, t1, t2, t3 = train[:4]
    good = [gen(t, f"g{i}", f"According to the results of this study, {t.question[0].lower()}{t.question[1:]}")
            for i, t in enumerate(train[:8])]
    new_good = gen(t3, "n0", "Was a reduction of the primary outcome reported in this trial?", source="new")
    bad = [
        gen(t0, "short", "Why?"),
        gen(t0, "long", "Does it? " * 80),
        gen(t1, "same", "  " + t1.question.upper().replace("?", " ?!")),  # same after normalization
        gen(t2, "empty", "Is the effect described here clinically relevant?", contexts=["  "]),
        gen(t2, "dup-gen", good[0].question.replace(",", "").lower(), label=good[0].final_decision),
        gen(t2, "dup-train", train[5].question, source="new"),
        # planted test items
        gen(test[0], "test-parent", "Is this a genuinely different question about the abstract?", contexts=t0.contexts),
        gen(t3, "test-context", "Did the intervention work in the population studied?", source="new",
            contexts=[test[1].contexts[-1]]),
        gen(t3, "test-question", "Quick check: " + test[2].question, source="new"),
    ]
    funnel, kept, rejected = run_filter(tmp_path, prepared["dir"], good + [new_good] + bad)

    assert [r.id for r in kept] == [r.id for r in good] + ["n0"]
    assert rejected == {"short": "too_short", "long": "too_long", "same": "same_as_parent", "empty": "empty_context",
                        "dup-gen": "near_duplicate", "dup-train": "duplicate_of_train", "test-parent": "test_overlap",
                        "test-context": "test_overlap", "test-question": "test_overlap"}
    assert funnel == {"in": 18, "kept": 9,
                      "dropped": {"too_short": 1, "too_long": 1, "same_as_parent": 1, "empty_context": 1,
                                  "near_duplicate": 1, "duplicate_of_train": 1, "test_overlap": 3},
                      "steps": {"validate": {"in": 18, "out": 14, "dropped": {
                                    "empty_context": 1, "same_as_parent": 1, "too_long": 1, "too_short": 1}},
                                "dedup": {"in": 14, "out": 12, "dropped": {
                                    "duplicate_of_train": 1, "near_duplicate": 1}},
                                "decontaminate": {"in": 12, "out": 9, "dropped": {"test_overlap": 3}}},
                      "by_source": {"rewrite": {"in": 14, "kept": 8, "dropped": {"validate": 4, "dedup": 1,
                                                                                  "decontaminate": 1}},
                                    "new": {"in": 4, "kept": 1, "dropped": {"dedup": 1, "decontaminate": 2}}}}
    assert json.loads((tmp_path / "funnel.json").read_text()) == funnel
    assert json.loads((tmp_path / "plot.json").read_text()) == [
        {"step": "in", "items": 18}, {"step": "validate", "items": 14}, {"step": "dedup", "items": 12},
        {"step": "decontaminate", "items": 9}]
    rejects = [json.loads(x) for x in (tmp_path / "filtered/rejects.jsonl").read_text().splitlines()]
    assert {r["id"]: r["reject_step"] for r in rejects}["dup-train"] == "dedup"


def test_same_question_with_another_label_is_not_a_duplicate(tmp_path, prepared):
    t0, t1 = prepared["train"][:2]
    a = gen(t0, "a", "Does the abstract report a benefit?", source="new", label="yes")
    b = gen(t1, "b", "does the abstract report a benefit", source="new", label="no")
    c = gen(t1, "c", "Does the abstract report a benefit!", source="new", label="yes")
    funnel, kept, rejected = run_filter(tmp_path, prepared["dir"], [a, b, c])
    assert [r.id for r in kept] == ["a", "b"] and rejected == {"c": "near_duplicate"}


def test_thresholds_come_from_params(tmp_path, prepared):
    t0 = prepared["train"][0]
    item = gen(t0, "g", "Is this item twenty-nine chars?")
    p = rule_params()
    p.filter.min_question_chars = 40
    assert run_filter(tmp_path, prepared["dir"], [item], p)[2] == {"g": "too_short"}
    p.filter.min_question_chars, p.filter.max_question_chars = 5, 20
    assert run_filter(tmp_path, prepared["dir"], [item], p)[2] == {"g": "too_long"}


def test_decontamination_ngram_length(tmp_path, prepared):
    t0, test0 = prepared["train"][0], prepared["test"][0]
    words = normalize(test0.question).split()
    grams = contamination_ngrams([test0], prepared["train"] + prepared["dev"], 4)
    # a window of the test question that no train/dev record has
    start = next(i for i in range(len(words) - 3) if tuple(words[i:i + 4]) in grams)
    item = gen(t0, "g", "Regarding " + " ".join(words[start:start + 4]) + ", what did they find?", source="new")
    p = rule_params()
    p.filter.decontaminate.ngram = 4
    assert run_filter(tmp_path, prepared["dir"], [item], p)[2] == {"g": "test_overlap"}
    p.filter.decontaminate.ngram = 5
    assert run_filter(tmp_path, prepared["dir"], [item], p)[2] == {}


@pytest.mark.parametrize("line, expected", [
    ('{"id": "g9", "question": "q?", "contexts": ["c"]', "malformed JSON"),
    ('{"id": "g9", "question": "Is it so?", "final_decision": "yes", "source": "new"}', "missing field 'contexts'"),
    ('{"id": "g9", "question": "Is it so?", "contexts": ["c"], "final_decision": "YES"}', "unknown label 'YES'"),
    ('{"id": "g9", "question": "Is it so?", "contexts": ["c"], "final_decision": "yes", "source": "rewrite"}',
     "needs 'parent_id'"),
    ('{"id": "g9", "question": "Is it so?", "contexts": ["c"], "final_decision": "yes", "parent_id": "123"}',
     "parent_id '123' is not in the prepared data"),
])
def test_bad_generated_line_names_file_line_and_writes_nothing(tmp_path, prepared, line, expected):
    t0 = prepared["train"][0]
    rows = [gen(t0, f"g{i}", f"Rewritten question number {i}?").to_dict() for i in range(3)]
    path = tmp_path / "generated.jsonl"
    write_jsonl(path, rows)
    path.write_text(path.read_text() + line + "\n")
    out = tmp_path / "filtered"
    with pytest.raises(MedaugError, match=rf"generated\.jsonl:4: .*{expected}") as e:
        filtering.run(Params(), FilterIO(prepared["dir"], path, out / "kept.jsonl", out / "rejects.jsonl",
                                         tmp_path / "f.json"))
    assert "\n" not in str(e.value)
    assert not out.exists() and not (tmp_path / "f.json").exists()


def test_rules_helpers():
    assert normalize("  Does X,  reduce   Y?! ") == normalize("does x reduce y") == "does x reduce y"
    assert word_ngrams("A b, c d", 3) == {("a", "b", "c"), ("b", "c", "d")}
    assert word_ngrams("a b", 3) == set()


@needs_pqal
def test_real_pqal_test_abstracts_flagged_and_train_abstracts_kept(tmp_path):
    out = tmp_path / "prepared"
    prepare.run(Params(data=DataParams(source=str(PUBMEDQA / "ori_pqal.json"))), tmp_path, out, tmp_path / "m.json")
    train, test = read_records(out / "train.jsonl"), read_records(out / "test.jsonl")
    # a "new" item on every train abstract is clean; one on every test abstract is contamination
    items = [gen(train[i % len(train)], f"x{i}", f"Synthetic question number {i} about this abstract?", "new",
                 contexts=r.contexts) for i, r in enumerate(train + test)]
    funnel, kept, rejected = run_filter(tmp_path, out, items)
    assert funnel["kept"] == len(train) and set(rejected) == {f"x{i}" for i in range(len(train), len(items))}
    assert funnel["dropped"]["test_overlap"] == len(test) == 500


def test_the_funnel_starts_from_every_item_the_teacher_was_asked_for(tmp_path, prepared):
    """generate's rejects (teacher errors, unusable replies) count in the funnel under their reason."""
    train = read_records(prepared["dir"] / "train.jsonl")
    good = [Record(id=f"g{i}", question=f"Is generated question number {i} about the abstract fine?",
                   contexts=list(r.contexts), final_decision=r.final_decision, source="new", parent_id=r.id)
            for i, r in enumerate(train[:3])]
    gen_rejects = tmp_path / "gen_rejects.jsonl"
    write_jsonl(gen_rejects, [{"id": "x1", "strategy": "new", "reason": "teacher_error", "teacher_error": "http_429"},
                              {"id": "x2", "strategy": "rewrite", "reason": "not_json"}])
    gen_path = tmp_path / "generated.jsonl"
    write_records(gen_path, good)
    out = tmp_path / "out"
    funnel = filtering.run(rule_params(), FilterIO(prepared["dir"], gen_path, out / "kept.jsonl", out / "rejects.jsonl",
                                                   tmp_path / "funnel.json", gen_rejects))
    assert funnel["in"] == 5 and funnel["kept"] == 3
    assert funnel["steps"]["generate"] == {"in": 5, "out": 3, "dropped": {"not_json": 1, "teacher_error": 1}}
    assert funnel["dropped"]["teacher_error"] == 1 and funnel["dropped"]["not_json"] == 1
    assert funnel["in"] == funnel["kept"] + sum(funnel["dropped"].values())
    assert funnel["by_source"] == {"new": {"in": 4, "kept": 3, "dropped": {"generate": 1}},
                                   "rewrite": {"in": 1, "kept": 0, "dropped": {"generate": 1}}}


def test_balance_caps_each_labels_share_dropping_the_latest(tmp_path, prepared):
    train = prepared["train"]
    items = [gen(t, f"g{i}", f"Is generated question number {i} about this abstract answered?", source="new",
                 label=label) for i, (t, label) in enumerate(zip(train, ["yes"] * 6 + ["no"] * 2 + ["maybe"]))]
    p = rule_params()
    p.filter.steps.append("balance")
    p.filter.balance.max_share = 0.5
    funnel, kept, rejected = run_filter(tmp_path, prepared["dir"], items, p)
    # yes: 6 of 9; dropping the latest yes items until yes <= half of what is left: 3 yes, 2 no, 1 maybe
    assert rejected == {"g5": "label_cap", "g4": "label_cap", "g3": "label_cap"}
    assert [r.final_decision for r in kept].count("yes") == 3 and funnel["steps"]["balance"]["out"] == 6
    p.filter.balance.max_share = 1.0
    assert run_filter(tmp_path, prepared["dir"], items, p)[2] == {}


def test_a_round_lets_a_label_reach_its_share_among_the_picked_parents(tmp_path):
    """Issue 34: a round's parents are the student's errors, which gather on the labels it gets wrong; the flat cap
    would undo that (PQA-L: 19 of 24 parents `maybe`, 11 of 23 items dropped). In a round (`picked`) a label may
    reach its parents' share; beyond it, and everywhere outside rounds, the flat cap holds."""
    from medaug.filtering.steps.balance import balance
    from medaug.filtering.steps.base import Context

    parents = [Record(id=f"p{i}", question="q?", contexts=["c"], final_decision=label)
               for i, label in enumerate(["maybe"] * 6 + ["yes"] * 2)]  # maybe: 75% of the parents
    # each parent rewritten once, keeping its label, and the teacher adds two more maybe items of its own
    items = [gen(q, f"g{i}", "q?") for i, q in enumerate(parents)] + [
        gen(parents[0], f"x{i}", "q?", label="maybe") for i in range(2)]  # maybe: 8 of 10
    p = Params()
    p.filter.balance.max_share = 0.5
    flat = balance(items, Context(p, tmp_path, parents, [], []))
    assert len(flat) == 6 and set(flat.values()) == {"label_cap"}  # 2 maybe of 4 left
    picked = balance(items, Context(p, tmp_path, parents, [], [], picked=True))
    assert picked == {"x1": "label_cap", "x0": "label_cap"}  # down to 6 of 8: the parents' 75%, not past it


def test_decontamination_is_never_optional():
    from medaug.params import parse_params
    with pytest.raises(MedaugError, match="filter.steps must include decontaminate"):
        parse_params({"filter": {"steps": ["validate", "dedup"]}})
    from medaug.filtering import steps
    with pytest.raises(MedaugError, match=r"filter.steps\[2\] = 'magic' is no filter step"):
        steps.check(parse_params({"filter": {"steps": ["validate", "decontaminate", "magic"]}}))


def test_data_card_names_teacher_prompts_funnel_labels_and_mesh(tmp_path, prepared):
    train = prepared["train"]
    items = [gen(t, f"g{i}", f"Is generated question number {i} about this abstract answered?", source="new",
                 label=label) for i, (t, label) in enumerate(zip(train, ["yes", "no", "maybe", "maybe"]))]
    items.append(gen(train[0], "short", "Why?"))
    write_records(tmp_path / "generated.jsonl", items)
    out = tmp_path / "filtered"
    funnel = filtering.run(rule_params(), FilterIO(prepared["dir"], tmp_path / "generated.jsonl", out / "kept.jsonl",
                                                   out / "rejects.jsonl", tmp_path / "funnel.json",
                                                   datacard=out / "datacard.md"))
    card = (out / "datacard.md").read_text()
    # the teacher and prompt hash of the records (teacher `m` is no teacher of these params: said so)
    assert "- Teacher `m` (not among params.yaml's teachers now); for new" in card and "| new | `p` |" in card
    assert "| validate | 5 | 4 | too_short 1 |" in card and "| decontaminate | 4 | 4 | - |" in card
    n = len(train)
    assert "| generated, kept | 4 | 1 (25%) | 1 (25%) | 2 (50%) |" in card
    assert f"augmented set: {n + 4}" in card and funnel["kept"] == 4
    top = Counter(h for r in train + read_records(out / "kept.jsonl") for h in r.meshes).most_common(1)[0]
    assert f"| {top[0]} |" in card


def test_data_card_reports_mesh_branches_when_a_tree_file_is_given(tmp_path, prepared):
    train = prepared["train"]
    heading = train[0].meshes[0]
    (tmp_path / "trees.tsv").write_text(f"{heading}\tC14.280;F03.600\n")
    p = rule_params()
    p.generate.mesh.descriptors = "trees.tsv"
    items = [gen(train[0], "g0", "Is generated question number zero about this abstract answered?", source="mesh")]
    items[0].meshes = [heading]
    write_records(tmp_path / "generated.jsonl", items)
    out = tmp_path / "filtered"
    filtering.run(p, FilterIO(prepared["dir"], tmp_path / "generated.jsonl", out / "kept.jsonl", out / "rejects.jsonl",
                              tmp_path / "funnel.json", datacard=out / "datacard.md"), root=tmp_path)
    card = (out / "datacard.md").read_text()
    n = sum(heading in r.meshes for r in train)
    assert "### MeSH tree branches" in card
    assert f"| C14 | {n} | 1 | {n + 1} |" in card and f"| F03 | {n} | 1 | {n + 1} |" in card
