"""The registry policy (higher / McNemar), lineage tags and description of a registered version: a tmp project with
two tiny candidates whose scores and predictions are written by hand, registered one step after another in a sqlite
MLflow store (the register_steps fixture, tests/conftest.py). The champion served by `mlflow models serve` and
loaded in a fresh process: tests/integration/test_register.py."""

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest

from medaug.data.jsonl import write_json, write_jsonl
from medaug.data.schema import write_records
from medaug.errors import MedaugError
from medaug.evaluate.metrics import compute_metrics
from medaug.evaluate.stats import mcnemar, paired_delta_ci
from medaug.params import parse_params
from medaug.paths import RegisterIO
from medaug.tracking import register
from support.paths import ROOT
from support.register import CARD, GOLDS, NAME, TEST, params, right_on


def test_first_registration_is_champion_with_lineage(register_steps):
    p, reg, now = register_steps["first"]
    client = register_steps["client"]
    assert (reg["version"], reg["alias"], reg["candidate"], reg["value"]) == (1, "champion", "tiny-original-0", 0.5)
    assert (reg["policy"], reg["alpha"], reg["vs_champion"], reg["previous_champion_version"]) == \
        ("higher", 0.05, None, None)
    assert reg["candidates"]["tiny-augmented-0"] == {"accuracy": 0.4, "macro_f1": pytest.approx(
        compute_metrics(GOLDS, right_on(8))["macro_f1"]), "p_vs_champion": None}
    v1 = client.get_model_version(NAME, "1")
    assert v1.tags["params_digest"] == hashlib.sha256(
        json.dumps(dataclasses.asdict(p), sort_keys=True).encode()).hexdigest()
    assert v1.tags["task"] == "pubmedqa"
    assert (v1.tags["train_precision"], v1.tags["score_precision"]) == ("unknown", "fp32")  # an adapter without it
    # the `original` recipe generates nothing: no teacher, no funnel, no data card (v5, augmented, has them)
    assert "teacher_model" not in v1.tags and "filter_funnel" not in v1.tags
    assert (v1.tags["dvc_data_prepared"], v1.tags["dvc_data_train"], v1.tags["dvc_model_adapter"]) == \
        ("aaa.dir", "bbb", "ddd.dir")
    assert {"git_commit", "git_dirty", "test_digest", "accuracy", "macro_f1", "base_model"} <= set(v1.tags)
    assert v1.tags["test_digest"] == reg["test_digest"] == register.test_digest(TEST)
    assert v1.description.startswith(f"**tiny-original-0**: accuracy 0.5000 on test data `{reg['test_digest'][:12]}`")
    assert "\n" not in v1.description and "Data card" not in v1.description
    assert now == {"champion": 1}
    run = client.get_run(v1.run_id)  # no champion to compare with: no vs_champion metrics
    assert not any(k.startswith("vs_champion.") for k in run.data.metrics)
    # MLflow 3's logged model: named after the candidate, its test scores tied to the test data they come from
    logged = client.get_logged_model(v1.source.removeprefix("models:/"))  # the version's source is its model
    assert logged.name == "tiny-original-0" and logged.tags["mlflow.note.content"] == v1.description
    assert {(m.key, m.dataset_name, m.dataset_digest) for m in logged.metrics} >= {
        ("accuracy", "data/prepared/test.jsonl", reg["test_digest"][:36])}
    assert run.data.tags["medaug.stage"] == "register" and run.data.tags.get("mlflow.parentRunId")
    assert (run.data.params["evaluate.bootstrap"], run.data.params["evaluate.ci_method"]) == ("1000", "bca")


def test_registered_model_is_code_with_a_signature_an_example_and_pinned_requirements(register_steps, tmp_path):
    """Models from code (no pickle), the type-hinted signature and an input example, requirements pip can resolve
    (no local version label), the adapter instead of merged weights, a model card with the test scores, and the
    winner's scores and params on the LoggedModel (MLflow's Logged Models page)."""
    import mlflow
    import yaml

    _, reg, _ = register_steps["first"]
    client = register_steps["client"]
    mv = client.get_model_version(NAME, "1")
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1", dst_path=str(tmp_path)))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    flavor = mlmodel["flavors"]["python_function"]
    assert flavor["model_code_path"].endswith("served_model.py") and not (local / "python_model.pkl").exists()
    assert "question" in mlmodel["signature"]["inputs"] and (local / "input_example.json").exists()
    reqs = (local / "requirements.txt").read_text().split()
    names = {r.split("==")[0].lower() for r in reqs if "==" in r}
    assert {"torch", "transformers", "peft", "mlflow", "pydantic"} <= names
    assert not [r for r in reqs if "+" in r], reqs
    files = {p.name for p in (local / "artifacts" / "model").iterdir()}
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    card = (local / "artifacts" / "model" / "README.md").read_text()
    assert card.startswith("---\n") and "| Accuracy | 0.5000 |" in card and "tiny-original-0" in card
    assert f"Test split, {len(TEST)} items" in card  # n from the evaluate report (reports/eval), not metrics/
    logged = mlflow.get_logged_model(mv.model_id or mv.source.removeprefix("models:/"))
    scores = {m.key: m.value for m in logged.metrics}
    assert (scores["accuracy"], scores["macro_f1"]) == (0.5, pytest.approx(compute_metrics(GOLDS, right_on(10))[
        "macro_f1"]))
    assert logged.params["candidate"] == reg["candidate"] and "train.learning_rate" in logged.params


def test_a_run_of_another_task_is_refused_the_champion_with_the_fix(register_steps):
    """An exam task registering under the PubMedQA model's name would score a yes/no/maybe champion on letters."""
    p = parse_params({"task": {"file": str(ROOT / "src/medaug/tasks/medqa.yaml")}, "generate": {"strategies": []},
                      "train": {"variants": ["original"]}, "register": {"model_name": NAME}})
    with pytest.raises(MedaugError, match=r"medaug-pubmedqa's champion \(v\d+\) answers task pubmedqa; this run's "
                                          r"task is medqa: set register.model_name .* \(e.g. medaug-medqa\)"):
        register.current_champion(register_steps["client"], p, "digest", [])


def test_a_tie_and_a_worse_winner_stay_challenger(register_steps):
    client = register_steps["client"]
    _, tie, now = register_steps["tie"]
    assert (tie["version"], tie["alias"], tie["previous_champion_version"], tie["previous_champion_value"]) == \
        (2, "challenger", 1, 0.5)
    # the same hits: Δ 0 and a degenerate bootstrap, whose interval is [0, 0] (not BCa's NaN)
    assert tie["vs_champion"] == {"p_value": 1.0, "a_only": 0, "b_only": 0, "delta_accuracy": 0.0,
                                  "delta_ci95": {"low": 0.0, "high": 0.0}}
    assert now == {"champion": 1, "challenger": 2}
    _, worse, now = register_steps["worse"]
    assert (worse["version"], worse["alias"], worse["value"]) == (3, "challenger", 0.45)
    assert worse["vs_champion"] == {"p_value": 1.0, "a_only": 0, "b_only": 1, "delta_accuracy": pytest.approx(-0.05),
                                    "delta_ci95": paired_delta_ci(GOLDS, right_on(9), right_on(10), 1000, 0)}
    ci = worse["vs_champion"]["delta_ci95"]
    assert ci["low"] < -0.05 <= ci["high"] <= 0  # one item lost, none gained: never above 0
    # the augmented winner (v5) is described by its recipe's data card, which names its teacher: over MLflow's
    # 5000-character description limit it is cut at a line, with a note
    v5 = client.get_model_version(NAME, "5")
    assert (v5.tags["candidate"], v5.tags["teacher_model"]) == ("tiny-augmented-0", "openai:fake-teacher")
    assert v5.tags["filter_funnel"] == "generated 24 -> kept 17 (validate -1, dedup -4, decontaminate -2)"
    assert len(v5.description) <= 5000 and "| Heading 0 |" in v5.description and CARD in v5.description
    assert "| Heading 399 |" not in v5.description
    assert v5.description.endswith("(truncated; the full data card is the register run's artifact `augmented.md`)")
    assert now == {"champion": 1, "challenger": 3}


def test_mcnemar_policy_needs_a_significant_gain(register_steps, tmp_path):
    client = register_steps["client"]
    _, noise, now = register_steps["noise"]
    assert (noise["version"], noise["alias"], noise["value"]) == (4, "challenger", 0.55)  # higher, p = 1
    assert noise["vs_champion"] == {"p_value": 1.0, "a_only": 1, "b_only": 0, "delta_accuracy": pytest.approx(0.05),
                                    "delta_ci95": paired_delta_ci(GOLDS, right_on(11), right_on(10), 1000, 0)}
    assert 0 <= noise["vs_champion"]["delta_ci95"]["low"] <= 0.05 < noise["vs_champion"]["delta_ci95"]["high"]
    assert now == {"champion": 1, "challenger": 4}
    _, beyond, now = register_steps["beyond"]
    assert (beyond["version"], beyond["alias"], beyond["candidate"]) == (5, "champion", "tiny-augmented-0")
    assert beyond["vs_champion"] == {"p_value": pytest.approx(0.03125), "a_only": 6, "b_only": 0,
                                     "delta_accuracy": pytest.approx(0.3),
                                     "delta_ci95": paired_delta_ci(GOLDS, right_on(16), right_on(10), 1000, 0)}
    ci = beyond["vs_champion"]["delta_ci95"]
    assert 0 < ci["low"] < 0.3 < ci["high"]
    assert (beyond["policy"], beyond["previous_champion_version"]) == ("mcnemar", 1)
    assert now == {"champion": 5, "challenger": 4}
    assert client.get_model_version(NAME, "5").tags["candidate"] == "tiny-augmented-0"
    # the register run logged the winner's predictions: the next comparison reads them from there
    run_id = client.get_model_version(NAME, "5").run_id
    logged_metrics = client.get_run(run_id).data.metrics  # and its comparison with the champion it replaced
    assert logged_metrics["vs_champion.p_value"] == pytest.approx(0.03125)
    assert logged_metrics["vs_champion.delta_accuracy"] == pytest.approx(0.3)
    assert (logged_metrics["vs_champion.delta_ci95_low"], logged_metrics["vs_champion.delta_ci95_high"]) == \
        (pytest.approx(ci["low"]), pytest.approx(ci["high"]))
    assert "run_id" not in beyond  # the report in git reads the same when the same result is registered again
    logged = json.loads(Path(client.download_artifacts(run_id, "predictions.json", str(tmp_path)))
                        .read_text())
    assert logged == {r.id: y for r, y in zip(TEST, right_on(16))}


def test_register_json_tests_every_candidate_against_the_champion(register_steps):
    champion = right_on(10)  # v1's predictions, logged on its register run
    for step, preds in (("tie", {"tiny-original-0": right_on(10), "tiny-augmented-0": right_on(8)}),
                        ("beyond", {"tiny-original-0": right_on(11), "tiny-augmented-0": right_on(16)})):
        reg = register_steps[step][1]
        assert set(reg["candidates"]) == set(preds)
        for name, ps in preds.items():
            assert reg["candidates"][name]["p_vs_champion"] == mcnemar(GOLDS, ps, champion)["p_value"]
            assert reg["candidates"][name]["accuracy"] == compute_metrics(GOLDS, ps)["accuracy"]
    # 2 discordant, both for v1
    assert register_steps["tie"][1]["candidates"]["tiny-augmented-0"]["p_vs_champion"] == 0.5
    assert json.loads((register_steps["root"] / "reports/register.json").read_text()) == \
        register_steps["beyond"][1]


def test_mcnemar_counts_only_a_gain_in_the_winners_favour():
    higher, mcnemar_policy = params("higher"), params("mcnemar")
    assert register.wins(higher, 0.6, 0.5, {"p_value": 0.9, "a_only": 1, "b_only": 0})
    assert not register.wins(higher, 0.5, 0.5, {"p_value": 1.0, "a_only": 0, "b_only": 0})
    assert not register.wins(mcnemar_policy, 0.6, 0.5, {"p_value": 0.05, "a_only": 6, "b_only": 1})  # p = alpha
    assert register.wins(mcnemar_policy, 0.6, 0.5, {"p_value": 0.01, "a_only": 9, "b_only": 0})
    # macro-F1 higher, yet significantly less accurate than the champion: not a win
    assert not register.wins(mcnemar_policy, 0.6, 0.5, {"p_value": 0.01, "a_only": 0, "b_only": 9})


def test_champion_scored_on_other_test_data_is_rescored(register_steps, register_evaluated, tmp_path):
    """Another test split (another digest): the champion's pyfunc scores it, and these predictions are what every
    candidate is tested against. The winner here is worse, so the champion stays."""
    records, golds, wrong = TEST[:15], GOLDS[:15], right_on(0)[:15]
    write_records(tmp_path / "test.jsonl", records)
    for name in ("tiny-original-0", "tiny-augmented-0"):
        write_json(tmp_path / "metrics" / f"{name}.json", compute_metrics(golds, wrong))
        write_jsonl(tmp_path / "eval" / name / "predictions.jsonl",
                    ({"id": r.id, "prediction": y} for r, y in zip(records, wrong)))
    reg = register.run(params("mcnemar"), register_steps["root"], RegisterIO(
        tmp_path / "metrics", tmp_path / "eval", register_steps["root"] / "models", tmp_path / "test.jsonl",
        tmp_path / "register.json"))
    champion = register_evaluated[:15]
    assert (reg["alias"], reg["previous_champion_version"]) == ("challenger", 5)
    assert reg["test_digest"] == register.test_digest(records) != register_steps["beyond"][1]["test_digest"]
    assert reg["previous_champion_value"] == compute_metrics(golds, champion)["accuracy"]
    test = mcnemar(golds, wrong, champion)
    delta = -sum(y == g for g, y in zip(golds, champion)) / 15  # the winner gets none right
    assert reg["vs_champion"] == {**test, "delta_accuracy": pytest.approx(delta),
                                  "delta_ci95": paired_delta_ci(golds, wrong, champion, 1000, 0)}
    assert reg["candidates"]["tiny-augmented-0"]["p_vs_champion"] == test["p_value"]
    # no recipe reports given
    assert "filter_funnel" not in register_steps["client"].get_model_version(NAME, str(reg["version"])).tags


def test_setup_mlflow_leaves_the_environment_as_the_user_set_it(tmp_path, monkeypatch):
    """MLflow's set_tracking_uri / set_registry_uri export the URI to os.environ; a second project in the same
    process must still get its own store (a leak sent one test's registrations into another's registry)."""
    import mlflow

    from medaug.tracking import setup_mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        uri = setup_mlflow(tmp_path / name)
        assert uri == mlflow.get_tracking_uri() == mlflow.get_registry_uri() == f"sqlite:///{tmp_path / name}/mlflow.db"
        assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{tmp_path}/registry.db")  # the user's own setting wins
    setup_mlflow(tmp_path / "a")
    assert mlflow.get_registry_uri() == os.environ["MLFLOW_REGISTRY_URI"] == f"sqlite:///{tmp_path}/registry.db"


def test_with_several_seeds_the_best_mean_recipe_registers_its_seed_nearest_the_mean(tmp_path):
    """Not the luckiest seed: augmented-1 has the single best score, but original has the best mean (0.8), and
    of original's seeds, seed 1 scored that mean."""
    scores = {"original": [0.7, 0.8, 0.9], "augmented": [0.5, 0.95, 0.9]}
    for variant, values in scores.items():
        for seed, value in enumerate(values):
            write_json(tmp_path / f"tiny-{variant}-{seed}.json", {"accuracy": value, "macro_f1": 0.5})
    p = parse_params({"models": {"tiny": "tiny-llama"}, "train": {"models": ["tiny"], "seeds": [0, 1, 2]}})
    best, metrics = register.pick_best(p, tmp_path)
    assert best == ("tiny", "original", 1) and len(metrics) == 6
    p1 = parse_params({"models": {"tiny": "tiny-llama"}, "train": {"models": ["tiny"], "seeds": [1]}})
    assert register.pick_best(p1, tmp_path)[0] == ("tiny", "augmented", 1)  # one seed: the best score wins


def test_a_run_is_dirty_until_its_commit_holds_the_tracked_files_and_dvc_lock(tmp_path):
    """git_dirty: a changed tracked file, or a dvc.lock git does not track yet (a project's first run); outputs
    nobody tracks are no change; outside git, nothing is claimed."""
    import subprocess

    from medaug.tracking import run_tags

    def dirty() -> str:
        return run_tags(tmp_path)["git_dirty"]

    assert (dirty(), run_tags(tmp_path)["git_commit"]) == ("false", "unknown")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    assert dirty() == "false"  # no repository: no commit to be dirty against
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "params.yaml").write_text("a: 1\n")
    subprocess.run([*git, "add", "params.yaml"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=tmp_path, check=True)
    assert dirty() == "true"  # the first run's lock is not committed
    subprocess.run([*git, "add", "dvc.lock"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "run"], cwd=tmp_path, check=True)
    (tmp_path / "report.json").write_text("{}")
    assert dirty() == "false"  # an untracked output alone
    (tmp_path / "params.yaml").write_text("a: 2\n")
    assert dirty() == "true"


def test_with_several_seeds_the_gate_judges_the_recipe_by_its_seeds_not_one_run(tmp_path, monkeypatch, tiny_cache):
    """Issue 31: seeds 17, 17 and 5 right of 20 against a champion right on 10. The registered seed (nearest the
    mean, 0.65) alone beats the champion by McNemar (7 vs 0 discordant, p = 0.016), but one seed in three is far
    worse: the seed bootstrap leaves p near 0.5, so the recipe stays challenger. Three seeds right on 17 take it."""
    from mlflow import MlflowClient

    from medaug.evaluate.stats import seed_bootstrap
    from support.models import lora_adapter
    from support.register import FUNNEL, LOCK, register_step

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_records("data/prepared/test.jsonl", TEST)
    write_json("reports/funnel.json", FUNNEL)
    Path("dvc.lock").write_text(json.dumps(LOCK))
    Path("data/filtered").mkdir(parents=True)
    for name in ("tiny-original-0", *(f"tiny-augmented-{s}" for s in range(3))):
        lora_adapter("tiny-llama", Path("models") / name)

    def seeds_params(variant, seeds):
        return parse_params({"models": {"tiny": "tiny-llama"}, "teacher": {"backend": "openai", "model": "fake"},
                             "train": {"models": ["tiny"], "variants": [variant], "seeds": seeds},
                             "register": {"policy": "mcnemar", "alpha": 0.05}})

    monkeypatch.setattr("support.register.params", lambda policy: seeds_params("original", [0]))
    _, first, _ = register_step("mcnemar", {"tiny-original-0": right_on(10)})
    assert first["alias"] == "champion"
    monkeypatch.setattr("support.register.params", lambda policy: seeds_params("augmented", [0, 1, 2]))
    runs = [right_on(17), right_on(17), right_on(5)]
    _, noisy, now = register_step("mcnemar", {f"tiny-augmented-{s}": ps for s, ps in enumerate(runs)})
    assert noisy["candidate"] == "tiny-augmented-0" and noisy["value"] == 0.85  # the seed nearest the mean
    assert (noisy["vs_champion"]["p_value"], noisy["vs_champion"]["a_only"]) == (pytest.approx(2 / 2 ** 7), 7)
    assert noisy["vs_champion"]["seeds"] == {"n": 3, "accuracy": pytest.approx(0.65),
                                             **seed_bootstrap(GOLDS, runs, [right_on(10)], 1000, 0)}
    assert noisy["vs_champion"]["seeds"]["p_value"] > 0.05 and noisy["alias"] == "challenger"
    assert now == {"champion": 1, "challenger": 2}
    logged = MlflowClient().get_run(MlflowClient().get_model_version(NAME, "2").run_id).data.metrics
    assert logged["vs_champion.seeds.p_value"] == noisy["vs_champion"]["seeds"]["p_value"]
    _, steady, now = register_step("mcnemar", {f"tiny-augmented-{s}": right_on(17) for s in range(3)})
    assert steady["vs_champion"]["seeds"]["p_value"] < 0.05 and steady["alias"] == "champion"
    assert now == {"champion": 3, "challenger": 2}
