"""Training sets from recipes (medaug.data.variants), through generate and filter against the real HTTP teacher on
127.0.0.1: two teachers for one strategy. The recipes themselves: tests/unit/test_variants.py."""

from pathlib import Path

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
                                        tmp_path / "reports/b-only.json", tmp_path / "reports/b-only.md",
                                        tmp_path / "gen.jsonl", tmp_path / "gen_rejects.jsonl",
                                        tmp_path / "rejects.jsonl"))
    added = read_records(tmp_path / "train/b-only.jsonl")[10:]
    assert added and {r.teacher_model for r in added} == {"gpt-b"} and report["by_teacher"] == {"gpt-b": len(added)}
    assert report["teacher_cost_usd"] == pytest.approx(cost["gpt-b"] * len(added) / by["gpt-b"]["kept"], rel=1e-3)


def test_the_registered_recipe_describes_its_own_teacher_and_items(tmp_path, monkeypatch, tiny_cache):
    """The papers' setting (issue 31): recipe `a` takes gpt-a's `new` items, `b` takes gpt-b's (another sampling
    temperature). Whichever registers, its version's tags, description and model card name its own teacher, its
    own items and funnel, never the other's; an `original` winner carries no data card and no teacher tag."""
    import json

    import mlflow
    from mlflow import MlflowClient

    from medaug.augment.generate import run as generate
    from medaug.data.jsonl import write_json, write_jsonl
    from medaug.filtering.funnel import run as filter_run
    from medaug.params import parse_params
    from medaug.paths import RegisterIO
    from medaug.tracking import register
    from support.models import lora_adapter

    monkeypatch.chdir(tmp_path)
    records = make_train(16)
    write_records("data/prepared/train.jsonl", records[:10])
    write_records("data/prepared/dev.jsonl", records[10:13])
    write_records("data/prepared/test.jsonl", records[13:])
    raw = {"models": {"tiny": "tiny-llama"},
           "teacher": {"backend": "openai", "model": "gpt-a", "timeout_s": 5, "max_attempts": 1, "temperature": 0.3},
           "generate": {"strategies": ["new"], "per_strategy": 4, "mesh": {"descriptors": ""},
                        "teachers": {"new": [{}, {"model": "gpt-b", "temperature": 0.9}]}},
           "filter": {"steps": ["validate", "dedup", "decontaminate"]},
           "variants": {"original": {}, "a": {"strategies": ["new"], "teachers": ["gpt-a"]},
                        "b": {"strategies": ["new"], "teachers": ["gpt-b"]}},
           "train": {"models": ["tiny"], "variants": ["original", "a", "b"]}}
    p = parse_params(raw)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with OpenAIServer(pubmedqa_responder) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        generate(p, tmp_path, GenerateIO.at(tmp_path))
    filter_run(p, FilterIO.at(tmp_path), root=tmp_path)
    for v in ("original", "a", "b"):
        run(p, v, DatasetIO.at(v, tmp_path))
    cards = {v: (tmp_path / f"reports/dataset/{v}.md").read_text() for v in ("original", "a", "b")}
    assert "gpt-a" in cards["a"] and "temperature 0.3" in cards["a"] and "gpt-b" not in cards["a"]
    assert "gpt-b" in cards["b"] and "temperature 0.9" in cards["b"] and "gpt-a" not in cards["b"]
    assert "gpt-" not in cards["original"]
    Path("reports/registry.json").write_text("{}")
    Path("dvc.lock").write_text(json.dumps({"stages": {}}))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    test = read_records("data/prepared/test.jsonl")

    def register_with(winner: str, store: str) -> dict:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / store}")
        for v in ("original", "a", "b"):
            name = f"tiny-{v}-0"
            preds = [r.final_decision if v == winner else "maybe" if r.final_decision != "maybe" else "yes"
                     for r in test]
            right = sum(y == r.final_decision for y, r in zip(preds, test)) / len(test)
            write_json(tmp_path / f"metrics/eval/{name}.json", {"accuracy": right, "macro_f1": right})
            write_jsonl(tmp_path / f"eval/{name}/predictions.jsonl",
                        ({"id": r.id, "gold": r.final_decision, "prediction": y} for r, y in zip(test, preds)))
            if not (tmp_path / "models" / name).exists():
                lora_adapter("tiny-llama", tmp_path / "models" / name)
                write_json(tmp_path / "models" / name / "medaug.json",  # as train writes it
                           {"base": "tiny-llama", "variant": v, "seed": 0, "method": "lora"})
        reg = register.run(p, tmp_path, RegisterIO.at(tmp_path))
        version = MlflowClient().get_model_version(p.register.model_name, str(reg["version"]))
        local = mlflow.artifacts.download_artifacts(f"models:/{p.register.model_name}/{reg['version']}",
                                                    dst_path=str(tmp_path / f"dl-{store}"))
        card = (Path(local) / "artifacts" / "model" / "README.md").read_text()
        return {"reg": reg, "tags": version.tags, "description": version.description, "card": card}

    b = register_with("b", "b.db")
    assert b["reg"]["candidate"] == "tiny-b-0" and b["tags"]["teacher_model"] == "openai:gpt-b"
    assert b["tags"]["filter_funnel"].startswith("requested 4 -> kept ")  # b's 4 requests, not all 8
    for text in (b["description"], b["card"]):
        assert "gpt-b" in text and "temperature 0.9" in text and "gpt-a" not in text and "temperature 0.3" not in text
    original = register_with("original", "original.db")
    assert original["reg"]["candidate"] == "tiny-original-0"
    assert "teacher_model" not in original["tags"] and "filter_funnel" not in original["tags"]
    assert "Data card" not in original["description"] and "Data card" not in original["card"]
