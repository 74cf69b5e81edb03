"""The registry policy (higher / McNemar), lineage tags and description of a registered version, and the champion
served by `mlflow models serve`: a tmp project with two tiny candidates whose scores and predictions are written
by hand, registered one step after another in a sqlite MLflow store."""

import dataclasses
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from medaug.data.jsonl import write_json, write_jsonl
from conftest import ROOT
from medaug.data.schema import Record, write_records
from medaug.errors import MedaugError
from medaug.evaluate import compute_metrics
from medaug.evaluate.stats import mcnemar, paired_delta_ci
from medaug.params import parse_params
from medaug.tracking import register
from test_evaluate import lora_adapter

NAME = "medaug-pubmedqa"
LABELS = ["yes", "no", "maybe"]
N = 20
WORDS = ("blood pressure drug adults trial mortality cancer risk outcome cohort patients lower higher dose weeks "
         "randomized placebo significant").split()
_rng = random.Random(0)  # word salad: the tiny model's answers vary with it (templated questions get one answer)
TEST = [Record(id=f"t{i}", question=" ".join(_rng.choices(WORDS, k=3 + i % 7)) + "?",
               contexts=[" ".join(_rng.choices(WORDS, k=5 + 3 * (i % 5))), " ".join(_rng.choices(WORDS, k=4))],
               final_decision=LABELS[i % 3]) for i in range(N)]
GOLDS = [r.final_decision for r in TEST]
FUNNEL = {"in": 24, "kept": 17, "dropped": {"duplicate": 4, "overlaps_test": 2, "too_short": 1},
          "steps": {"validate": {"in": 24, "out": 23, "dropped": {"too_short": 1}},
                    "dedup": {"in": 23, "out": 19, "dropped": {"duplicate": 4}},
                    "decontaminate": {"in": 19, "out": 17, "dropped": {"overlaps_test": 2}},
                    "balance": {"in": 17, "out": 17, "dropped": {}}},
          "by_source": {"rewrite": {"in": 12, "kept": 9, "dropped": {}}, "new": {"in": 12, "kept": 8, "dropped": {}}}}
CARD = "# Data card: augmented training set\n\n- Teacher: `openai` backend, model(s) `fake-teacher`\n"
LONG_CARD = CARD + "\n| heading | original | generated, kept | augmented |\n|---|---|---|---|\n" + "".join(
    f"| Heading {i} | {i} | 1 | {i + 1} |\n" for i in range(400))
LOCK = {"stages": {"prepare": {"outs": [{"path": "data/prepared", "md5": "aaa.dir"},
                                        {"path": "data/train/original.jsonl", "md5": "bbb"}]},
                   "filter": {"outs": [{"path": "data/train/augmented.jsonl", "md5": "ccc"}]},
                   "train@tiny-original-0": {"outs": [{"path": "models/tiny-original-0", "md5": "ddd.dir"}]},
                   "train@tiny-augmented-0": {"outs": [{"path": "models/tiny-augmented-0", "md5": "eee.dir"}]}}}


def right_on(n_right):
    """Predictions right on the first n_right test items and wrong on the rest (so the McNemar counts of two such
    lists are their difference: a_only = max(0, a - b), b_only = max(0, b - a))."""
    return [g if i < n_right else LABELS[(LABELS.index(g) + 1) % 3] for i, g in enumerate(GOLDS)]


def params(policy):
    return parse_params({"models": {"tiny": "tiny-llama"}, "train": {"models": ["tiny"]},
                         "teacher": {"backend": "openai", "model": "fake-teacher"},
                         "register": {"policy": policy, "alpha": 0.05}})


def register_step(policy, preds, card=CARD):
    """Write each candidate's eval metrics and predictions.jsonl (as the evaluate stage does), then register."""
    for name, ps in preds.items():
        m = compute_metrics(GOLDS, ps)
        write_json(Path("metrics/eval") / f"{name}.json", {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]})
        write_jsonl(Path("eval") / name / "predictions.jsonl",
                    ({"id": r.id, "gold": r.final_decision, "prediction": y} for r, y in zip(TEST, ps)))
    Path("data/filtered/datacard.md").write_text(card)
    p = params(policy)
    reg = register.run(p, Path.cwd(), Path("metrics/eval"), Path("eval"), Path("models"),
                       Path("data/prepared/test.jsonl"), Path("reports/register.json"),
                       Path("data/filtered/datacard.md"), Path("reports/funnel.json"))
    return p, reg, aliases()


def aliases():
    """{alias: version} in the registry now."""
    from mlflow import MlflowClient

    return {a: int(v) for a, v in MlflowClient().get_registered_model(NAME).aliases.items()}


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    """Five registrations in one store: first (champion), tie, worse, higher within noise, higher beyond it."""
    import torch
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("register")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tiny_cache fixture: tiny matrices
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MEDAUG_CACHE", str(tmp_path_factory.getbasetemp() / "medaug-cache"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        write_records("data/prepared/test.jsonl", TEST)
        write_json("reports/funnel.json", FUNNEL)
        Path("data/filtered").mkdir(parents=True)
        Path("dvc.lock").write_text(json.dumps(LOCK))  # JSON is YAML
        for name in ("tiny-original-0", "tiny-augmented-0"):
            lora_adapter("tiny-llama", Path("models") / name)
        worst = right_on(8)
        out = {"first": register_step("higher", {"tiny-original-0": right_on(10), "tiny-augmented-0": worst}),
               "tie": register_step("higher", {"tiny-original-0": right_on(10), "tiny-augmented-0": worst}, LONG_CARD),
               "worse": register_step("higher", {"tiny-original-0": right_on(9), "tiny-augmented-0": worst}),
               # 11 vs 10 right: 1 discordant pair, p = 1
               "noise": register_step("mcnemar", {"tiny-original-0": right_on(11), "tiny-augmented-0": worst}),
               # 16 vs 10 right: 6 discordant pairs all for the candidate, p = 2 / 2**6 = 0.03125
               "beyond": register_step("mcnemar", {"tiny-original-0": right_on(11), "tiny-augmented-0": right_on(16)})}
        yield {"root": root, "client": MlflowClient(), **out}
    torch.set_num_threads(threads)


def test_first_registration_is_champion_with_lineage(steps):
    p, reg, now = steps["first"]
    client = steps["client"]
    assert (reg["version"], reg["alias"], reg["candidate"], reg["value"]) == (1, "champion", "tiny-original-0", 0.5)
    assert (reg["policy"], reg["alpha"], reg["vs_champion"], reg["previous_champion_version"]) == \
        ("higher", 0.05, None, None)
    assert reg["candidates"]["tiny-augmented-0"] == {"accuracy": 0.4, "macro_f1": pytest.approx(
        compute_metrics(GOLDS, right_on(8))["macro_f1"]), "p_vs_champion": None}
    v1 = client.get_model_version(NAME, "1")
    assert v1.tags["params_digest"] == hashlib.sha256(
        json.dumps(dataclasses.asdict(p), sort_keys=True).encode()).hexdigest()
    assert v1.tags["teacher_model"] == "openai:fake-teacher" and v1.tags["task"] == "pubmedqa"
    assert (v1.tags["train_precision"], v1.tags["score_precision"]) == ("unknown", "fp32")  # an adapter without it
    assert v1.tags["filter_funnel"] == "generated 24 -> kept 17 (validate -1, dedup -4, decontaminate -2)"
    assert (v1.tags["dvc_data_prepared"], v1.tags["dvc_data_train"], v1.tags["dvc_model_adapter"]) == \
        ("aaa.dir", "bbb", "ddd.dir")
    assert {"git_commit", "git_dirty", "test_digest", "accuracy", "macro_f1", "base_model"} <= set(v1.tags)
    assert v1.tags["test_digest"] == reg["test_digest"] == register.test_digest(TEST)
    assert v1.description.startswith(f"**tiny-original-0**: accuracy 0.5000 on test data `{reg['test_digest'][:12]}`")
    assert v1.description.endswith("\n\n" + CARD)
    assert now == {"champion": 1}
    run = client.get_run(v1.run_id)  # no champion to compare with: no vs_champion metrics
    assert not any(k.startswith("vs_champion.") for k in run.data.metrics)
    assert (run.data.params["evaluate.bootstrap"], run.data.params["evaluate.ci_method"]) == ("1000", "bca")


def test_registered_model_is_code_with_a_signature_an_example_and_pinned_requirements(steps, tmp_path):
    """Models from code (no pickle), the type-hinted signature and an input example, requirements pip can resolve
    (no local version label), the adapter instead of merged weights, a model card with the test scores, and the
    winner's scores and params on the LoggedModel (MLflow's Logged Models page)."""
    import mlflow
    import yaml

    _, reg, _ = steps["first"]
    client = steps["client"]
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
    logged = mlflow.get_logged_model(mv.model_id or mv.source.removeprefix("models:/"))
    scores = {m.key: m.value for m in logged.metrics}
    assert (scores["accuracy"], scores["macro_f1"]) == (0.5, pytest.approx(compute_metrics(GOLDS, right_on(10))[
        "macro_f1"]))
    assert logged.params["candidate"] == reg["candidate"] and "train.learning_rate" in logged.params


def test_the_served_model_imports_nothing_its_requirements_leave_out(steps, tmp_path):
    """Load and ask the champion in a fresh process, then read the import statements of every medaug module it
    loaded: each third-party module they name that the process imported belongs to a distribution in the model's
    requirements.txt (a tiny base never imports the Gemma package, so its model does not require it)."""
    import mlflow

    root = steps["root"]
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1", dst_path=str(tmp_path)))
    script = f"""
import ast, json, sys, importlib.metadata as md
import mlflow.pyfunc
m = mlflow.pyfunc.load_model({str(local)!r})
m.predict([{{"question": "Is it?", "contexts": ["a b"]}}])
dists = md.packages_distributions()
names = set()
for mod in list(sys.modules.values()):
    path = getattr(mod, "__file__", None) or ""
    if not (getattr(mod, "__name__", "").startswith("medaug") and path.endswith(".py")):
        continue
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names |= {{a.name.split(".")[0] for a in node.names}}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
print(json.dumps({{n: dists[n] for n in names if n in dists and n in sys.modules and n != "medaug"}}))
"""
    env = dict(os.environ, MEDAUG_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = json.loads(done.stdout.strip().splitlines()[-1])  # {module: the distributions that provide it}
    required = {r.split("==")[0].lower().replace("_", "-") for r in (local / "requirements.txt").read_text().split()
                if "==" in r}
    missing = {n: ds for n, ds in imported.items() if not {d.lower().replace("_", "-") for d in ds} & required}
    assert {"torch", "transformers", "peft"} <= set(imported) and not missing, missing


def test_pip_resolves_the_registered_requirements_from_pypi_alone(steps, tmp_path):
    """`pip install --dry-run` of the model's requirements.txt against PyPI only (no local index, no constraints,
    no installed packages): what a fresh serving machine or `mlflow models build-docker` does."""
    import mlflow

    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError as e:
        pytest.skip(f"pypi.org is not reachable from here ({e}): the dry run needs the real index")
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1/requirements.txt", dst_path=str(tmp_path)))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--isolated", "--ignore-installed",
                           "--quiet", "--index-url", "https://pypi.org/simple", "-r", str(local)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_run_of_another_task_is_refused_the_champion_with_the_fix(steps):
    """An exam task registering under the PubMedQA model's name would score a yes/no/maybe champion on letters."""
    p = parse_params({"task": {"file": str(ROOT / "src/medaug/tasks/medqa.yaml")}, "generate": {"strategies": []},
                      "train": {"variants": ["original"]}, "register": {"model_name": NAME}})
    with pytest.raises(MedaugError, match=r"medaug-pubmedqa's champion \(v\d+\) answers task pubmedqa; this run's "
                                          r"task is medqa: set register.model_name .* \(e.g. medaug-medqa\)"):
        register.current_champion(steps["client"], p, "digest", [])


def test_a_tie_and_a_worse_winner_stay_challenger(steps):
    client = steps["client"]
    _, tie, now = steps["tie"]
    assert (tie["version"], tie["alias"], tie["previous_champion_version"], tie["previous_champion_value"]) == \
        (2, "challenger", 1, 0.5)
    # the same hits: Δ 0 and a degenerate bootstrap, whose interval is [0, 0] (not BCa's NaN)
    assert tie["vs_champion"] == {"p_value": 1.0, "a_only": 0, "b_only": 0, "delta_accuracy": 0.0,
                                  "delta_ci95": {"low": 0.0, "high": 0.0}}
    assert now == {"champion": 1, "challenger": 2}
    _, worse, now = steps["worse"]
    assert (worse["version"], worse["alias"], worse["value"]) == (3, "challenger", 0.45)
    assert worse["vs_champion"] == {"p_value": 1.0, "a_only": 0, "b_only": 1, "delta_accuracy": pytest.approx(-0.05),
                                    "delta_ci95": paired_delta_ci(GOLDS, right_on(9), right_on(10), 1000, 0)}
    ci = worse["vs_champion"]["delta_ci95"]
    assert ci["low"] < -0.05 <= ci["high"] <= 0  # one item lost, none gained: never above 0
    # a data card over MLflow's 5000-character description limit is cut at a line, with a note
    v2 = client.get_model_version(NAME, "2")
    assert len(v2.description) <= 5000 and "| Heading 0 |" in v2.description
    assert "| Heading 399 |" not in v2.description
    assert v2.description.endswith("(truncated; the full data card is the register run's artifact `datacard.md`)")
    assert now == {"champion": 1, "challenger": 3}


def test_mcnemar_policy_needs_a_significant_gain(steps, tmp_path):
    client = steps["client"]
    _, noise, now = steps["noise"]
    assert (noise["version"], noise["alias"], noise["value"]) == (4, "challenger", 0.55)  # higher, p = 1
    assert noise["vs_champion"] == {"p_value": 1.0, "a_only": 1, "b_only": 0, "delta_accuracy": pytest.approx(0.05),
                                    "delta_ci95": paired_delta_ci(GOLDS, right_on(11), right_on(10), 1000, 0)}
    assert 0 <= noise["vs_champion"]["delta_ci95"]["low"] <= 0.05 < noise["vs_champion"]["delta_ci95"]["high"]
    assert now == {"champion": 1, "challenger": 4}
    _, beyond, now = steps["beyond"]
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


def test_register_json_tests_every_candidate_against_the_champion(steps):
    champion = right_on(10)  # v1's predictions, logged on its register run
    for step, preds in (("tie", {"tiny-original-0": right_on(10), "tiny-augmented-0": right_on(8)}),
                        ("beyond", {"tiny-original-0": right_on(11), "tiny-augmented-0": right_on(16)})):
        reg = steps[step][1]
        assert set(reg["candidates"]) == set(preds)
        for name, ps in preds.items():
            assert reg["candidates"][name]["p_vs_champion"] == mcnemar(GOLDS, ps, champion)["p_value"]
            assert reg["candidates"][name]["accuracy"] == compute_metrics(GOLDS, ps)["accuracy"]
    assert steps["tie"][1]["candidates"]["tiny-augmented-0"]["p_vs_champion"] == 0.5  # 2 discordant, both for v1
    assert json.loads((steps["root"] / "reports/register.json").read_text()) == steps["beyond"][1]


def test_mcnemar_counts_only_a_gain_in_the_winners_favour():
    higher, mcnemar_policy = params("higher"), params("mcnemar")
    assert register.wins(higher, 0.6, 0.5, {"p_value": 0.9, "a_only": 1, "b_only": 0})
    assert not register.wins(higher, 0.5, 0.5, {"p_value": 1.0, "a_only": 0, "b_only": 0})
    assert not register.wins(mcnemar_policy, 0.6, 0.5, {"p_value": 0.05, "a_only": 6, "b_only": 1})  # p = alpha
    assert register.wins(mcnemar_policy, 0.6, 0.5, {"p_value": 0.01, "a_only": 9, "b_only": 0})
    # macro-F1 higher, yet significantly less accurate than the champion: not a win
    assert not register.wins(mcnemar_policy, 0.6, 0.5, {"p_value": 0.01, "a_only": 0, "b_only": 9})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["predictions"]


@pytest.fixture(scope="module")
def evaluated(steps, tmp_path_factory):
    """What the evaluate stage predicts for the champion's candidate (tiny-augmented-0, v5) on the test split."""
    from medaug import evaluate

    root, out = steps["root"], tmp_path_factory.mktemp("evaluate")
    evaluate.run(steps["beyond"][0], "tiny", "augmented", 0, root / "data/prepared/test.jsonl",
                 root / "models/tiny-augmented-0", out, out / "m.json", out / "c.json", out / "pc.json")
    want = [json.loads(line)["prediction"] for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(want) == N and set(want) <= set(LABELS) and len(set(want)) > 1  # not a constant answer
    return want


def test_champion_scored_on_other_test_data_is_rescored(steps, evaluated, tmp_path):
    """Another test split (another digest): the champion's pyfunc scores it, and these predictions are what every
    candidate is tested against. The winner here is worse, so the champion stays."""
    records, golds, wrong = TEST[:15], GOLDS[:15], right_on(0)[:15]
    write_records(tmp_path / "test.jsonl", records)
    for name in ("tiny-original-0", "tiny-augmented-0"):
        write_json(tmp_path / "metrics" / f"{name}.json", compute_metrics(golds, wrong))
        write_jsonl(tmp_path / "eval" / name / "predictions.jsonl",
                    ({"id": r.id, "prediction": y} for r, y in zip(records, wrong)))
    reg = register.run(params("mcnemar"), steps["root"], tmp_path / "metrics", tmp_path / "eval",
                       steps["root"] / "models", tmp_path / "test.jsonl", tmp_path / "register.json")
    champion = evaluated[:15]
    assert (reg["alias"], reg["previous_champion_version"]) == ("challenger", 5)
    assert reg["test_digest"] == register.test_digest(records) != steps["beyond"][1]["test_digest"]
    assert reg["previous_champion_value"] == compute_metrics(golds, champion)["accuracy"]
    test = mcnemar(golds, wrong, champion)
    delta = -sum(y == g for g, y in zip(golds, champion)) / 15  # the winner gets none right
    assert reg["vs_champion"] == {**test, "delta_accuracy": pytest.approx(delta),
                                  "delta_ci95": paired_delta_ci(golds, wrong, champion, 1000, 0)}
    assert reg["candidates"]["tiny-augmented-0"]["p_vs_champion"] == test["p_value"]
    assert "filter_funnel" not in steps["client"].get_model_version(NAME, str(reg["version"])).tags  # no funnel given


def test_served_champion_answers_as_the_evaluate_stage(steps, evaluated, tmp_path):
    root, want = steps["root"], evaluated

    port = free_port()
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", MLFLOW_DISABLE_TELEMETRY="true",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # uvicorn, from the venv
    log = tmp_path / "serve.log"
    with open(log, "w") as f:
        server = subprocess.Popen(["mlflow", "models", "serve", "-m", f"models:/{NAME}@champion", "--env-manager",
                                   "local", "-h", "127.0.0.1", "-p", str(port)], cwd=root, env=env,
                                  stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)  # its own process group: uvicorn goes with it
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"`mlflow models serve` did not answer /ping on port {port} "
                                f"({'exited ' + str(server.returncode) if server.poll() is not None else 'timeout'}):"
                                f"\n{log.read_text()[-4000:]}")
                time.sleep(0.5)
        rows = [{"question": r.question, "contexts": r.contexts} for r in TEST]
        assert post(port, {"inputs": rows}) == want
        assert post(port, {"inputs": [{"question": r.question, "context": " ".join(r.contexts)} for r in TEST]}) \
            == want
        with pytest.raises(urllib.error.HTTPError) as e:  # the signature is typed: `inputs` is the one payload
            post(port, {"dataframe_records": rows})
        assert e.value.code == 400 and "with 'inputs' key" in e.value.read().decode()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


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
