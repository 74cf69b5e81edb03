"""Training sets from recipes (medaug.data.variants), through generate and filter against the real HTTP teacher on
127.0.0.1: two teachers for one strategy. The recipes themselves: tests/unit/test_variants.py."""

import pytest

from medaug.data.schema import read_records, write_records
from medaug.data.variants import run
from medaug.paths import DatasetIO, FilterIO, GenerateIO
from support.generate import make_train
from support.openai_server import OpenAIServer, pubmedqa_responder


def test_two_teachers_for_one_strategy_are_counted_priced_and_selected_apart(tmp_path, monkeypatch):
    """Dr.LLaMA's teacher row: `new` asked of gpt-a and gpt-b (10x the price) in one run, through generate, filter
    and a recipe that takes gpt-b's items only. Both teachers answer alike here, so the filter must compare each
    teacher's items with its own (pooled, dedup would drop every gpt-b item as a near-duplicate of gpt-a's)."""
    from medaug.augment.generate import run as generate
    from medaug.filtering.funnel import run as filter_run
    from medaug.params import parse_params

    prepared = tmp_path / "data/prepared"
    records = make_train(16)
    write_records(prepared / "train.jsonl", records[:10])
    write_records(prepared / "dev.jsonl", records[10:13])
    write_records(prepared / "test.jsonl", records[13:])
    p = parse_params({
        "teacher": {"backend": "openai", "model": "gpt-a", "timeout_s": 5, "max_attempts": 1,
                    "prices": {"gpt-a": {"input": 1, "output": 2}, "gpt-b": {"input": 10, "output": 20}}},
        "generate": {"strategies": ["rewrite", "new"], "per_strategy": 4, "teachers": {"new": [{}, {"model": "gpt-b"}]}},
        "variants": {"b-only": {"strategies": ["new"], "teachers": ["gpt-b"]}}, "train": {"variants": ["b-only"]}})
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with OpenAIServer(pubmedqa_responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        gen = generate(p, tmp_path, GenerateIO(prepared, tmp_path / "gen.jsonl", tmp_path / "gen_rejects.jsonl",
                                               tmp_path / "generate.json"))
    assert sorted(b["model"] for b in srv.requests) == ["gpt-a"] * 8 + ["gpt-b"] * 4
    made = read_records(tmp_path / "gen.jsonl")
    assert {(r.source, r.teacher_model) for r in made} == {("rewrite", "gpt-a"), ("new", "gpt-a"), ("new", "gpt-b")}
    new_a = sorted(r.id for r in made if r.teacher_model == "gpt-a" and r.source == "new")
    assert new_a and all(i.endswith("@gpt-a") for i in new_a)  # the same items asked of each teacher
    assert sorted(r.id for r in made if r.teacher_model == "gpt-b") == [i.replace("@gpt-a", "@gpt-b") for i in new_a]
    assert not any("@" in r.id for r in made if r.source == "rewrite")  # one teacher: ids as before
    cost = gen["cost_usd_by_source"]["new"]
    assert cost["gpt-b"] == pytest.approx(10 * cost["gpt-a"], rel=1e-3) and cost["gpt-a"] > 0

    funnel = filter_run(p, FilterIO(prepared, tmp_path / "gen.jsonl", tmp_path / "kept.jsonl",
                                    tmp_path / "rejects.jsonl", tmp_path / "funnel.json",
                                    tmp_path / "gen_rejects.jsonl"), root=tmp_path)
    kept = read_records(tmp_path / "kept.jsonl")
    by = funnel["by_teacher"]
    assert (by["gpt-a"]["in"], by["gpt-b"]["in"]) == (8, 4)
    assert by["gpt-b"]["kept"] == sum(r.teacher_model == "gpt-b" for r in kept)
    assert "dedup" not in by["gpt-b"]["dropped"] and by["gpt-b"]["kept"] > 0  # not duplicates of gpt-a's
    assert by["gpt-a"]["kept"] + by["gpt-b"]["kept"] == funnel["kept"]

    report = run(p, "b-only", DatasetIO(prepared / "train.jsonl", tmp_path / "kept.jsonl", tmp_path / "generate.json",
                                        tmp_path / "funnel.json", tmp_path / "train/b-only.jsonl",
                                        tmp_path / "reports/b-only.json"))
    added = read_records(tmp_path / "train/b-only.jsonl")[10:]
    assert added and {r.teacher_model for r in added} == {"gpt-b"} and report["by_teacher"] == {"gpt-b": len(added)}
    assert report["teacher_cost_usd"] == pytest.approx(cost["gpt-b"] * len(added) / by["gpt-b"]["kept"], rel=1e-3)
