"""Training sets from recipes (medaug.data.variants): selection by strategy, teacher and judge score, seeded
subsamples that nest, and the teacher cost each variant carries."""

import json

import pytest

from pathlib import Path

from medaug.data.schema import Record, read_records, write_records
from medaug.data.variants import build, item_costs, run, select
from medaug.errors import MedaugError
from medaug.params import Params, VariantParams
from medaug.paths import DatasetIO

TRAIN = [Record(id=f"t{i}", question=f"train question {i}?", contexts=["c"], final_decision="yes") for i in range(3)]


def generated(i: int, source: str, teacher: str, judge: float | None = None) -> Record:
    return Record(id=f"g{i}", question=f"generated question {i}?", contexts=["c"], final_decision="no", source=source,
                  teacher={"model": teacher}, scores=None if judge is None else {"judge": judge})


# 12 kept items: rewrite by gpt-a (g0-g3), new by gpt-a (g4-g7), new by gpt-b (g8-g11); judge score i % 5
KEPT = [generated(i, "rewrite" if i < 4 else "new", "gpt-b" if i >= 8 else "gpt-a", judge=i % 5) for i in range(12)]


def ids(records):
    return [r.id for r in records]


def test_original_is_the_train_split_alone():
    records, report = build("original", VariantParams(), TRAIN, KEPT)
    assert records == TRAIN
    assert report == {"items": 3, "train_split": 3, "generated": 0, "by_source": {}, "by_teacher": {},
                      "teacher_cost_usd": 0.0}


@pytest.mark.parametrize("recipe, want", [
    (VariantParams(strategies=["rewrite", "new"]), [f"g{i}" for i in range(12)]),
    (VariantParams(strategies=["rewrite"]), ["g0", "g1", "g2", "g3"]),
    (VariantParams(strategies=["new"], teachers=["gpt-b"]), ["g8", "g9", "g10", "g11"]),
    (VariantParams(strategies=["rewrite", "new"], min_judge_score=3), ["g3", "g4", "g8", "g9"]),
    (VariantParams(strategies=["rewrite", "new"], max_items=2), ["g0", "g1"]),
])
def test_a_recipe_takes_exactly_what_it_names_in_kept_order(recipe, want):
    records, report = build("x", recipe, TRAIN, KEPT)
    assert ids(records) == ids(TRAIN) + want
    assert report["generated"] == len(want) and report["items"] == 3 + len(want)


def test_unscored_items_never_pass_a_judge_threshold():
    kept = KEPT + [generated(99, "new", "gpt-a")]
    assert "g99" not in ids(select(VariantParams(strategies=["new"], min_judge_score=0), kept))


def test_fractions_are_seeded_and_nest():
    recipe = VariantParams(strategies=["rewrite", "new"])
    picks = {f: ids(select(VariantParams(strategies=["rewrite", "new"], fraction=f), KEPT)) for f in (0.25, 0.5, 1)}
    assert [len(picks[f]) for f in (0.25, 0.5, 1)] == [3, 6, 12]
    assert set(picks[0.25]) < set(picks[0.5]) < set(picks[1]) == set(ids(select(recipe, KEPT)))
    assert picks[0.5] == sorted(picks[0.5], key=lambda i: int(i[1:]))  # kept order
    assert picks[0.5] == ids(select(VariantParams(strategies=["rewrite", "new"], fraction=0.5), KEPT[::-1]))[::-1]
    other = ids(select(VariantParams(strategies=["rewrite", "new"], fraction=0.5, seed=1), KEPT))
    assert other != picks[0.5] and len(other) == 6


def test_a_recipe_selecting_nothing_fails_naming_it():
    with pytest.raises(MedaugError, match=r"variants.picky selects none of the 12 items the filter kept"):
        build("picky", VariantParams(strategies=["new"], teachers=["gpt-z"]), TRAIN, KEPT)


def test_teacher_cost_is_shared_by_the_kept_items_of_each_strategy_and_teacher():
    gen = {"cost_usd_by_source": {"rewrite": {"gpt-a": 0.8}, "new": {"gpt-a": 0.4, "gpt-b": 2.0}}}
    funnel = {"teacher": {"cost_usd": 0.06, "cost_usd_saved": 0.06}}  # the judge: half paid now, half cached
    costs = item_costs(KEPT, gen, funnel)
    assert costs["g0"] == pytest.approx(0.8 / 4 + 0.12 / 12)
    assert costs["g8"] == pytest.approx(2.0 / 4 + 0.12 / 12)
    assert sum(costs.values()) == pytest.approx(0.8 + 0.4 + 2.0 + 0.12)  # every dollar lands on one item
    full = build("all", VariantParams(strategies=["rewrite", "new"]), TRAIN, KEPT, costs)[1]["teacher_cost_usd"]
    half = build("half", VariantParams(strategies=["rewrite", "new"], fraction=0.5), TRAIN, KEPT, costs)[1]
    assert full == pytest.approx(3.32)
    b_only = build("b", VariantParams(strategies=["new"], teachers=["gpt-b"]), TRAIN, KEPT, costs)[1]
    assert b_only["teacher_cost_usd"] == pytest.approx(2.0 + 4 * 0.01) and b_only["by_teacher"] == {"gpt-b": 4}
    assert 0 < half["teacher_cost_usd"] < full


def test_run_writes_the_set_and_its_report(tmp_path):
    write_records(tmp_path / "train.jsonl", TRAIN)
    write_records(tmp_path / "kept.jsonl", KEPT)
    (tmp_path / "generate.json").write_text(json.dumps({"cost_usd_by_source": {"rewrite": {"gpt-a": 0.4}}}))
    (tmp_path / "funnel.json").write_text(json.dumps({"in": 12, "kept": 12}))
    p = Params(variants={"rw": VariantParams(strategies=["rewrite"])})
    write_records(tmp_path / "generated.jsonl", KEPT)  # the filter dropped none of what was generated
    (tmp_path / "rejects.jsonl").write_text("")
    report = run(p, "rw", DatasetIO(tmp_path / "train.jsonl", tmp_path / "kept.jsonl", tmp_path / "generate.json",
                                  tmp_path / "funnel.json", tmp_path / "out/rw.jsonl", tmp_path / "reports/rw.json",
                                  tmp_path / "reports/rw.md", tmp_path / "generated.jsonl",
                                  tmp_path / "no-generate-rejects.jsonl", tmp_path / "rejects.jsonl"))
    assert ids(read_records(tmp_path / "out/rw.jsonl")) == ["t0", "t1", "t2", "g0", "g1", "g2", "g3"]
    assert json.loads((tmp_path / "reports/rw.json").read_text()) == report
    assert report["by_source"] == {"rewrite": 4} and report["teacher_cost_usd"] == pytest.approx(0.4)
    # its own data card and funnel: the rewrite items it took, not the filter's whole set
    rewrites = sum(r.source == "rewrite" for r in KEPT)
    assert report["funnel"]["in"] == rewrites and report["funnel"]["kept"] == 4
    assert report["funnel"]["steps"]["recipe"]["dropped"] == ({"not_selected": rewrites - 4} if rewrites > 4 else {})
    assert (tmp_path / "reports/rw.md").read_text().startswith("# Data card: recipe `rw`")


def test_run_names_an_unknown_recipe():
    with pytest.raises(MedaugError, match=r"no recipe `variants.nope` \(known: original, augmented\)"):
        run(Params(), "nope", DatasetIO.at("nope", Path("unused")))
