"""End to end, as a user runs it: `dvc repro` in a fresh git repo with tiny models and a real OpenAI-compatible
teacher on 127.0.0.1, then the champion pulled from the MLflow registry in a fresh process."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ruamel.yaml import YAML

from conftest import ROOT
from medaug import headline
from openai_server import OpenAIServer, pubmedqa_responder

SENTINEL_KEY = "sk-medaug-SENTINEL-4f1d9c0b7e"
RECIPES = {"original": {}, "augmented": {"strategies": ["rewrite", "new"]},
           "rewrite-only": {"strategies": ["rewrite"]}, "half": {"strategies": ["rewrite", "new"], "fraction": 0.5},
           "why": {"rationale": 0.5}}
VARIANTS = list(RECIPES)
DAPT = ["original", "augmented"]  # pretrain.variants: dapt candidates for these two only


def per_variant(*patterns, variants=VARIANTS):
    """{pattern.format(v=variant)} for every variant, e.g. per_variant("train@tiny-{v}-0")."""
    return {p.format(v=v) for p in patterns for v in variants}
COPY = ["dvc.yaml", "dvc.lock", "params.yaml", "stages", "src", ".dvc/config", ".dvc/plots", ".dvcignore",
        "data/.gitignore", ".gitignore"]  # .dvc/plots: the templates, and page.html as `make setup` writes it


def sh(cmd, cwd, env, check=True):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def copy_project(repo: Path) -> Path:
    """The project's tracked pipeline files (COPY) in `repo`, as a clone has them."""
    for rel in COPY:
        src, dst = ROOT / rel, repo / rel
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    return repo


def tiny(params: dict, variants: list[str], max_steps: int = 6) -> dict:
    """params.yaml's content set for a test DAG: tiny-llama trained `max_steps` steps on `variants`, no continued
    pretraining, and the teacher an OpenAI-compatible endpoint (the HTTP test server)."""
    params["models"] = {"tiny": "tiny-llama"}
    params["train"].update(models=["tiny"], variants=variants, max_steps=max_steps, batch_size=4, grad_accum=1,
                           learning_rate=0.01)
    params["pretrain"]["models"] = []
    params["teacher"].update(backend="openai", model="fake-teacher", max_concurrency=4, timeout_s=10)
    return params


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    repo = copy_project(tmp_path_factory.mktemp("project"))
    params = tiny(YAML(typ="safe", pure=True).load((repo / "params.yaml").read_text()), VARIANTS)
    params["variants"] = RECIPES
    params["pretrain"].update(models=["tiny"], variants=DAPT, max_steps=4, block_size=64)
    params["generate"]["per_strategy"] = 8
    params["task"]["max_seq_len"] = 256
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    env = git_repo(repo, tmp_path_factory.getbasetemp(), SENTINEL_KEY)
    with OpenAIServer(pubmedqa_responder) as server:
        env["OPENAI_BASE_URL"] = server.base_url
        first = sh(["dvc", "repro"], repo, env)
        yield {"repo": repo, "env": env, "server": server, "first": first}


def git_repo(repo: Path, base: Path, key: str) -> dict[str, str]:
    """Commit `repo` as a fresh git repo; the environment a user's shell would have for it (venv on PATH, the
    teacher key, the per-session tiny-model cache, no MLflow URI: the project's own store)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               OPENAI_API_KEY=key, MEDAUG_CACHE=str(base / "medaug-cache"),
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    sh(["git", "init", "-q"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "init"], repo, env)
    return env


def stages_run(out: str) -> set[str]:
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")}


def test_repro_builds_every_stage_and_registers_a_champion(project):
    repo = project["repo"]
    assert stages_run(project["first"].stdout) == {
        "prepare", "generate", "filter", "zero-shot@tiny", "pretrain@tiny", "evaluate-teacher", "registry", "register",
        "compare",
        *per_variant("dataset@{v}", "train@tiny-{v}-0", "evaluate@tiny-{v}-0"),
        *per_variant("train-dapt@tiny-{v}-0", "evaluate-dapt@tiny-{v}-0", variants=DAPT)}
    test = [json.loads(x) for x in (repo / "data/prepared/test.jsonl").read_text().splitlines()]
    for name in ("tiny-original-0", "tiny-augmented-0", "tiny-zero-shot", "tiny-dapt-original-0",
                 "tiny-dapt-augmented-0", "teacher"):
        rel = "teacher.json" if name == "teacher" else f"eval/{name}.json"
        m = json.loads((repo / "reports" / rel).read_text())
        # DVC's metric is the report's headline: what `dvc exp show` lists, nothing more
        assert json.loads((repo / "metrics" / rel).read_text()) == headline.scores(m)
        assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["macro_f1"] <= 1.0
        assert m["ci95"]["accuracy"]["low"] <= m["accuracy"] <= m["ci95"]["accuracy"]["high"]
        out = repo / ("eval-teacher" if name == "teacher" else f"eval/{name}")
        preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
        assert len(preds) == len(test) == m["n"]
        assert abs(m["accuracy"] - sum(p["prediction"] == p["gold"] for p in preds) / len(preds)) < 1e-9
        # PubMedQA's official format, in the order of its test_ground_truth.json
        official = json.loads((out / "predictions.json").read_text())
        assert list(official.items()) == [(p["id"], p["prediction"]) for p in preds]
        assert ("vs_zero_shot" in m) == (name not in ("tiny-zero-shot", "teacher"))
    assert json.loads((repo / "reports/teacher.json").read_text())["variant"] == "teacher-3-shot"
    funnel = json.loads((repo / "reports/funnel.json").read_text())
    assert json.loads((repo / "metrics/funnel.json").read_text()) == {"in": funnel["in"], "kept": funnel["kept"]}
    assert funnel["in"] == funnel["kept"] + sum(funnel["dropped"].values()) and funnel["kept"] > 0
    augmented = (repo / "data/train/augmented.jsonl").read_text().splitlines()
    original = (repo / "data/train/original.jsonl").read_text().splitlines()
    assert len(augmented) == len(original) + funnel["kept"]
    reg = json.loads((repo / "reports/register.json").read_text())
    assert reg["alias"] == "champion" and reg["version"] == 1
    assert reg["candidate"] in per_variant("tiny-{v}-0") | per_variant("tiny-dapt-{v}-0", variants=DAPT)
    assert project["server"].requests, "the teacher server saw no request"


def test_registered_version_carries_lineage_and_a_tie_does_not_move_the_champion(project):
    repo, env = project["repo"], project["env"]
    from mlflow import MlflowClient

    store = f"sqlite:///{repo / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)  # not the registry an earlier test set up here
    reg = json.loads((repo / "reports/register.json").read_text())
    v1 = client.get_model_version("medaug-pubmedqa", "1")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    head = sh(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()
    assert v1.tags["git_commit"] == head and v1.tags["git_dirty"] == "true"  # outputs not committed yet
    md5 = {o["path"]: o["md5"] for stage in lock.values() for o in stage.get("outs", [])}
    variant = v1.tags["variant"].removeprefix("dapt-")
    assert reg["candidate"] == f"tiny-{v1.tags['variant']}-{v1.tags['seed']}"
    assert v1.tags["dvc_model_adapter"] == md5[f"models/{reg['candidate']}"]
    assert v1.tags["dvc_data_prepared"] == md5["data/prepared"]
    assert v1.tags["dvc_data_train"] == md5[f"data/train/{variant}.jsonl"]
    assert v1.tags["test_digest"] == reg["test_digest"] and float(v1.tags["accuracy"]) == reg["value"]
    # Same candidate, same test data, same score: a tie registers a challenger, the champion stays.
    sh(["dvc", "repro", "--force", "--single-item", "register"], repo, env)
    again = json.loads((repo / "reports/register.json").read_text())
    assert (again["version"], again["alias"], again["previous_champion_version"]) == (2, "challenger", 1)
    assert str(client.get_model_version_by_alias("medaug-pubmedqa", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("medaug-pubmedqa", "challenger").version) == "2"


def test_every_stage_that_trains_or_scores_logs_a_run_with_its_data_and_one_group(project):
    repo = project["repo"]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("medaug")
    runs = {r.data.tags["medaug.stage"]: r for r in client.search_runs([experiment.experiment_id])
            if "medaug.stage" in r.data.tags}
    md5 = {o["path"]: o["md5"] for stage in yaml.safe_load((repo / "dvc.lock").read_text())["stages"].values()
           for o in stage.get("outs", [])}
    for name, cand in (("evaluate@tiny-original-0", "tiny-original-0"), ("evaluate@tiny-augmented-0",
                                                                        "tiny-augmented-0"),
                       ("zero-shot@tiny", "tiny-zero-shot")):
        run = runs[name]
        metrics = json.loads((repo / f"metrics/eval/{cand}.json").read_text())
        assert run.data.metrics["accuracy"] == metrics["accuracy"] and run.data.params["variant"] in cand
        inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
        assert (inputs["test"].name, inputs["test"].digest) == ("data/prepared/test.jsonl", md5["data/prepared"])
        if name.startswith("evaluate@"):
            assert (inputs["model"].name, inputs["model"].digest) == (f"models/{cand}", md5[f"models/{cand}"])
    train = {i.tags[0].value: i.dataset for i in runs["train@tiny-augmented-0"].inputs.dataset_inputs}
    assert train["train"].digest == md5["data/train/augmented.jsonl"] and train["dev"].digest == md5["data/prepared"]
    # one `dvc repro`, one group: every run of it carries the same medaug.group (commit + params.yaml)
    groups = {r.data.tags.get("medaug.group") for r in runs.values()}
    assert len(groups) == 1 and None not in groups, groups


def test_second_repro_is_up_to_date(project):
    # bytecode caches (which a fresh clone lacks) are no part of a code dep's hash (.dvcignore)
    stray = project["repo"] / "src/medaug/data/__pycache__/stray.cpython-311.pyc"
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"\0")
    r = sh(["dvc", "repro"], project["repo"], project["env"])
    assert stages_run(r.stdout) == {"registry"}  # the registry check alone, by design (always_changed)
    version = json.loads((project["repo"] / "reports/register.json").read_text())["version"]
    assert f"registry sqlite:///mlflow.db: holds medaug-pubmedqa v{version} (" in r.stdout
    assert "Stage 'register' didn't change, skipping" in r.stdout
    # the CLI names a candidate's stage, dapt ones included (their own matrices)
    for args, stage in ((["train", "tiny", "dapt-augmented"], "train-dapt@tiny-augmented-0"),
                        (["evaluate", "tiny", "dapt-original"], "evaluate-dapt@tiny-original-0"),
                        (["pretrain", "tiny"], "pretrain@tiny")):
        r = sh(["medaug", *args], project["repo"], project["env"])
        assert f"dvc repro --single-item {stage}" in r.stderr and "didn't change" in r.stdout, (r.stdout, r.stderr)


def champion_vs_evaluate(repo: Path, env: dict[str, str], name: str,
                         fields: tuple[str, ...] = ("id", "question", "contexts")) -> tuple[dict, dict]:
    """({id: prediction} of `medaug predict` with models:/<name>@champion in a fresh process, on the test split's
    `fields`; {id: prediction} of the evaluate stage for the candidate register.json names)."""
    reg = json.loads((repo / "reports/register.json").read_text())
    test = [json.loads(x) for x in (repo / "data/prepared/test.jsonl").read_text().splitlines()]
    inp, out = repo / "predict_in.jsonl", repo / "predict_out.jsonl"
    inp.write_text("".join(json.dumps({k: r[k] for k in fields}) + "\n" for r in test))
    sh(["medaug", "predict", "--model", f"models:/{name}@champion", "--input", str(inp), "--output", str(out)],
       repo, env)
    got = {o["id"]: o["prediction"] for o in map(json.loads, out.read_text().splitlines())}
    want = {p["id"]: p["prediction"] for p in
            map(json.loads, (repo / f"eval/{reg['candidate']}/predictions.jsonl").read_text().splitlines())}
    inp.unlink()
    out.unlink()
    return got, want


def test_champion_from_registry_in_fresh_process_matches_evaluate(project):
    got, want = champion_vs_evaluate(project["repo"], project["env"], "medaug-pubmedqa")
    assert got == want


def test_metrics_diff_and_confusion_plots(project):
    repo, env = project["repo"], project["env"]
    show = sh(["dvc", "metrics", "show", "--json"], repo, env).stdout
    assert "metrics/eval/tiny-augmented-0.json" in show and "macro_f1" in show
    sh(["dvc", "plots", "show", "-o", "dvc_plots"], repo, env)
    assert (repo / "dvc_plots/index.html").exists()
    plots = json.loads(sh(["dvc", "plots", "show", "--json"], repo, env).stdout)["data"]

    def spec(key):
        return plots[key][0]["content"]

    candidates = per_variant("tiny-{v}-0") | per_variant("tiny-dapt-{v}-0", variants=DAPT)
    # every plot is drawn once, by its top-level definition (no default line plot of the same file beside it)
    recipes_plots = {"Accuracy by recipe (mean over train.seeds)",
                     "Accuracy against generated items (size and fraction series)"}
    assert set(plots) == {"plots/funnel.json", "plots/candidates.json", "plots/curves/train.json",
                          "plots/curves/dev.json", *recipes_plots,
                          *(f"plots/{kind}/{n}.json" for kind in ("confusion", "per_class")
                            for n in (*candidates, "tiny-zero-shot", "teacher"))}
    assert spec("plots/confusion/tiny-original-0.json")["title"]["text"].startswith("Confusion matrix")
    bars = spec("Accuracy by recipe (mean over train.seeds)")
    assert {r["recipe"] for r in bars["data"]["values"]} == per_variant("tiny-{v}") | per_variant(
        "tiny-dapt-{v}", variants=DAPT)
    funnel = spec("plots/funnel.json")  # the filter funnel as bars (and their counts), in the file's order
    assert [layer["mark"]["type"] for layer in funnel["layer"]] == ["bar", "text"]
    assert [r["step"] for r in funnel["data"]["values"]] == ["in", "generate", "validate", "dedup", "decontaminate",
                                                            "balance"]
    bars = spec("plots/per_class/tiny-original-0.json")  # per-class F1 bars
    assert {r["class"] for r in bars["data"]["values"]} == {"yes", "no", "maybe"}
    # the headline: every candidate, the zero-shot base and the teacher with their CIs, and the majority class
    rows = spec("plots/candidates.json")["data"]["values"]
    assert {r["candidate"] for r in rows if r["role"] == "trained"} == candidates
    assert all(r["low"] <= r["value"] <= r["high"] for r in rows if r["role"] != "majority")
    # training curves of all candidates overlaid, one line per candidate, against the step
    for key, y, names in [("plots/curves/train.json", "loss", (*candidates, "pretrain-tiny")),
                          ("plots/curves/dev.json", "dev_accuracy", candidates)]:
        curve = spec(key)
        assert curve["encoding"]["x"]["field"] == "step" and curve["encoding"]["y"]["field"] == y
        assert {r["candidate"] for r in curve["data"]["values"]} == set(names)
    loss = [r for r in spec("plots/curves/train.json")["data"]["values"] if r["candidate"] == "tiny-original-0"]
    assert [r["step"] for r in loss][:2] == [1, 2]
    funnel = json.loads((repo / "reports/funnel.json").read_text())
    assert list(funnel["steps"]) == ["generate", "validate", "dedup", "decontaminate", "balance"]
    assert "# Data card" in (repo / "data/filtered/datacard.md").read_text()


def test_each_training_set_holds_its_recipe_and_a_recipe_change_reruns_only_its_variant(project):
    repo, env = project["repo"], project["env"]

    def records(path):
        return [json.loads(x) for x in (repo / path).read_text().splitlines()]

    train, kept = records("data/prepared/train.jsonl"), records("data/filtered/kept.jsonl")
    sets = {v: records(f"data/train/{v}.jsonl") for v in VARIANTS}
    assert sets["original"] == sets["why"] == train and sets["augmented"] == train + kept
    assert sets["rewrite-only"] == train + [r for r in kept if r["source"] == "rewrite"] != sets["augmented"]
    half = sets["half"][len(train):]
    assert sets["half"][:len(train)] == train and len(half) == round(len(kept) / 2)
    assert [r for r in kept if r in half] == half  # a subset, in kept order
    for v in VARIANTS:
        report = json.loads((repo / f"reports/dataset/{v}.json").read_text())
        assert report["items"] == len(sets[v]) and report["generated"] == len(sets[v]) - len(train)
        assert json.loads((repo / f"metrics/dataset/{v}.json").read_text()) == {"items": len(sets[v])}
    # `why` trains on the same set with the explanation as a second target: same data, another loss
    first = {v: json.loads((repo / f"plots/train/tiny-{v}-0.json").read_text())[0]["loss"] for v in ("original", "why")}
    assert first["why"] > first["original"], first
    # a recipe change rebuilds and retrains that variant alone (the workspace keeps it: later tests start here)
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(params.replace("fraction: 0.5", "fraction: 0.75"))
    ran = stages_run(sh(["dvc", "repro"], repo, env).stdout)
    assert ran == {"dataset@half", "train@tiny-half-0", "evaluate@tiny-half-0", "compare", "registry", "register"}, ran
    assert len(records("data/train/half.jsonl")) == len(train) + round(len(kept) * 0.75)


def test_a_filter_param_change_reruns_filter_and_downstream_never_generate(project):
    repo, env = project["repo"], project["env"]
    params = (repo / "params.yaml").read_text()
    try:
        (repo / "params.yaml").write_text(params.replace("max_share: 0.5", "max_share: 0.6"))
        ran = stages_run(sh(["dvc", "repro", "--dry"], repo, env).stdout)
        assert "filter" in ran and not ran & {"prepare", "generate", "train@tiny-original-0"}, ran
    finally:
        (repo / "params.yaml").write_text(params)


def test_a_second_seed_trains_one_more_candidate_per_recipe_and_nothing_else(project):
    repo, env = project["repo"], project["env"]
    text = (repo / "params.yaml").read_text()
    params = yaml.safe_load(text)
    params["train"]["seeds"] = [0, 1]
    try:
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        # a dry run stops at the first evaluate of seed 1 (its model does not exist yet), after every train stage
        r = sh(["dvc", "repro", "--dry"], repo, env, check=False)
        new = per_variant("train@tiny-{v}-1") | per_variant("train-dapt@tiny-{v}-1", variants=DAPT)
        assert stages_run(r.stdout) == new, r.stdout
        for stage in per_variant("train@tiny-{v}-0") | per_variant("train-dapt@tiny-{v}-0", variants=DAPT):
            assert f"Stage '{stage}' didn't change, skipping" in r.stdout, r.stdout
        assert "failed to reproduce 'evaluate@tiny-original-1'" in r.stderr, r.stderr
    finally:
        (repo / "params.yaml").write_text(text)


def test_no_secret_in_any_written_file(project):
    repo = project["repo"]
    hits = [p for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts
            and SENTINEL_KEY.encode() in p.read_bytes()]
    assert hits == []


def test_exp_run_with_new_learning_rate_reruns_only_train_evaluate_register(project):
    repo, env = project["repo"], project["env"]
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "first run"], repo, env)
    lock_before = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    r = sh(["dvc", "exp", "run", "-S", "train.learning_rate=0.02"], repo, env)
    # pretraining has its own learning rate: it does not rerun
    assert stages_run(r.stdout) == {"registry", "register", "compare",
                                    *per_variant("train@tiny-{v}-0", "evaluate@tiny-{v}-0"),
                                    *per_variant("train-dapt@tiny-{v}-0", "evaluate-dapt@tiny-{v}-0", variants=DAPT)}
    lock_after = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    for name in ("train@tiny-original-0", "train@tiny-augmented-0"):
        assert lock_after[name]["outs"][0]["md5"] != lock_before[name]["outs"][0]["md5"], "adapter unchanged"
    params_diff = json.loads(sh(["dvc", "params", "diff", "--json"], repo, env).stdout)
    change = params_diff["params.yaml"]["train.learning_rate"]
    assert (change["old"], change["new"]) == (0.01, 0.02)
    metrics_diff = json.loads(sh(["dvc", "metrics", "diff", "--json", "--all"], repo, env).stdout)
    assert {"accuracy", "macro_f1"} <= set(metrics_diff["metrics/eval/tiny-original-0.json"])
    reg = json.loads((repo / "reports/register.json").read_text())
    assert reg["version"] == 4 and reg["alias"] in ("champion", "challenger")  # v3: the recipe change
    # the pull-request comment: deltas against the committed first run are those of `dvc metrics diff`
    report = sh(["medaug", "report"], repo, env).stdout
    row = next(line for line in report.splitlines() if line.startswith("| tiny-original-0"))
    old_new = metrics_diff["metrics/eval/tiny-original-0.json"]["accuracy"]
    assert row.split("|")[6].strip() == f"{old_new['new'] - old_new['old']:+.3f}", report
    assert "teacher-3-shot" in report and "Δ columns unavailable" not in report
    # the recipes view: one row per recipe, with its training set's counts and Δ vs original
    table = json.loads((repo / "reports/variants.json").read_text())
    assert [f"{r['model']}-{r['variant']}" for r in table["recipes"]] == [f"tiny-{v}" for v in VARIANTS] + [
        f"tiny-dapt-{v}" for v in DAPT]
    for v in VARIANTS:
        ds = json.loads((repo / f"reports/dataset/{v}.json").read_text())
        row = next(line for line in report.splitlines() if line.startswith(f"| tiny-{v} |"))
        assert row.split("|")[2].strip() == f"{ds['items']} ({ds['generated']})", row
        acc = json.loads((repo / f"metrics/eval/tiny-{v}-0.json").read_text())["accuracy"]
        assert row.split("|")[3].strip().startswith(f"{acc:.3f} ["), row  # one seed: its accuracy
        assert (row.split("|")[5].strip() == "–") == (v == "original"), row


def test_bad_params_key_fails_in_one_line_and_writes_nothing(project, tmp_path):
    repo, env = project["repo"], project["env"]
    params = (repo / "params.yaml").read_text()
    try:
        (repo / "params.yaml").write_text(params.replace("filter:\n", "filter:\n  n_gram: 3\n"))
        before = sorted(p for p in (repo / "data").rglob("*"))
        r = sh(["python", "stages/filter.py"], repo, env, check=False)
        assert r.returncode == 1
        assert r.stderr.strip().splitlines() == [
            "error: params.yaml: unknown key 'filter.n_gram' (known keys here: steps, min_question_chars, "
            "max_question_chars, dedup, decontaminate, judge, balance)"]
        assert sorted(p for p in (repo / "data").rglob("*")) == before
    finally:
        (repo / "params.yaml").write_text(params)


def test_malformed_generated_line_fails_with_file_and_line_and_keeps_outputs(project):
    repo, env = project["repo"], project["env"]
    gen = repo / "data/generated/generated.jsonl"
    original = gen.read_bytes()
    kept = (repo / "data/filtered/kept.jsonl").read_bytes()
    try:
        gen.chmod(0o644)
        lines = original.decode().splitlines(keepends=True)
        gen.write_text("".join(lines[:2]) + '{"id": "x", "question": \n' + "".join(lines[2:]))
        r = sh(["python", "stages/filter.py"], repo, env, check=False)
        assert r.returncode == 1
        assert r.stderr.strip().splitlines() == [r.stderr.strip()]
        assert r.stderr.startswith("error: data/generated/generated.jsonl:3: malformed JSON")
        assert (repo / "data/filtered/kept.jsonl").read_bytes() == kept
        assert not list((repo / "data").rglob("*.tmp"))
    finally:
        gen.write_bytes(original)


def test_training_curves_and_dapt_lineage(project):
    """train/pretrain log their curves to MLflow at each step and as DVC plots; a dapt candidate is the
    continued-pretraining adapter plus its own, and its checkpoints are gone once the stage succeeded."""
    from mlflow import MlflowClient

    repo = project["repo"]
    losses = json.loads((repo / "plots/train/tiny-augmented-0.json").read_text())
    dev = json.loads((repo / "plots/dev/tiny-augmented-0.json").read_text())
    assert [r["step"] for r in losses] == list(range(1, 7)) and dev and dev[-1]["step"] == 6
    meta = json.loads((repo / "models/tiny-dapt-augmented-0/medaug.json").read_text())
    assert meta["base"] == "models/pretrain/tiny" and meta["variant"] == "dapt-augmented"
    assert json.loads((repo / "models/pretrain/tiny/medaug.json").read_text())["base"] == "tiny-llama"
    assert json.loads((repo / "reports/pretrain/tiny.json").read_text())["steps"] == 4
    assert not list((repo / ".cache/checkpoints").glob("*/checkpoint-*"))
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("medaug")
    runs = client.search_runs([exp.experiment_id], "tags.`medaug.stage` = 'train@tiny-augmented-0'")
    assert runs
    history = client.get_metric_history(runs[0].info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, 7))
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx([r["loss"] for r in losses])
    assert client.get_metric_history(runs[0].info.run_id, "dev_accuracy")
    assert client.search_runs([exp.experiment_id], "tags.`medaug.stage` = 'pretrain@tiny'")


# --- `dvc exp run --temp`: a throw-away copy under .dvc/tmp/exps/ registers into the project's registry and reuses
# its teacher cache (last in this module: it commits the project)

NAME = "medaug-pubmedqa"
EXP = "alpha-0.04"


def client_of(db):
    from mlflow import MlflowClient

    store = f"sqlite:///{db}"
    return MlflowClient(tracking_uri=store, registry_uri=store)


def cached_answers(repo) -> int:
    with sqlite3.connect(repo / ".cache/teacher.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]


@pytest.fixture(scope="module")
def temp_exp(project):
    """The first run committed, then a temp experiment: a register setting (registers again, trains nothing) and a
    teacher setting that reruns every teacher stage (generate, filter, evaluate-teacher) without changing a single
    request."""
    repo, env, server = project["repo"], project["env"], project["server"]
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "first run"], repo, env)
    before = {"requests": len(server.requests), "answers": cached_answers(repo),
              "register": json.loads((repo / "reports/register.json").read_text())}
    r = sh(["dvc", "exp", "run", "--temp", "-n", EXP, "-S", "register.alpha=0.04",
            "-S", "teacher.max_concurrency=2"], repo, env)
    return {**project, "before": before, "run": r, "head": sh(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()}


def test_temp_experiment_registers_into_the_project_with_its_experiment_tags(temp_exp):
    repo, head = temp_exp["repo"], temp_exp["head"]
    ran = stages_run(temp_exp["run"].stdout)
    assert {"generate", "evaluate-teacher", "register"} <= ran and "train@tiny-original-0" not in ran, ran
    client = client_of(repo / "mlflow.db")
    (v2,) = [v for v in client.search_model_versions(f"name = '{NAME}'") if v.tags.get("dvc_exp_name") == EXP]
    want = {"git_commit": head, "dvc_exp_name": EXP, "dvc_exp_baseline_rev": head}
    assert {k: v2.tags.get(k) for k in want} == want
    exp = client.get_experiment_by_name("medaug")
    runs = client.search_runs([exp.experiment_id], f"tags.dvc_exp_name = '{EXP}'")
    stages = {run.data.tags.get("medaug.stage", run.info.run_name) for run in runs}
    assert {"generate", "evaluate-teacher", f"register-{v2.tags['candidate']}"} <= stages, stages
    assert all(run.data.tags["dvc_exp_baseline_rev"] == head for run in runs)
    # the registered model's artifacts are the project's too: the experiment's copy is gone by now
    import mlflow

    got = mlflow.artifacts.download_artifacts(run_id=v2.run_id, artifact_path="predictions.json",
                                              tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    assert json.loads(open(got).read())
    # the workspace is untouched: its metrics still name the first run's version
    assert json.loads((repo / "reports/register.json").read_text()) == temp_exp["before"]["register"]


def test_temp_experiment_reuses_the_project_teacher_cache(temp_exp):
    assert len(temp_exp["server"].requests) == temp_exp["before"]["requests"], "the temp experiment paid again"
    assert cached_answers(temp_exp["repo"]) == temp_exp["before"]["answers"]


# --- the register stage's side effect, visible to DVC (the `registry` stage; last: it replaces the registry)

def version_tag(db, env, version="1", key="candidate"):
    """Asked in a fresh process: this one's MLflow keeps its connection to a store file that was deleted."""
    code = (f"from mlflow import MlflowClient; u = 'sqlite:///{db}'; "
            f"print(MlflowClient(u, u).get_model_version({NAME!r}, {version!r}).tags[{key!r}])")
    return sh([sys.executable, "-c", code], db.parent, env).stdout.strip()


def test_a_lost_registry_registers_again_and_another_registry_too(temp_exp, tmp_path):
    repo, env = temp_exp["repo"], temp_exp["env"]
    named = json.loads((repo / "reports/register.json").read_text())["version"]
    (repo / "mlflow.db").unlink()
    shutil.rmtree(repo / "mlartifacts")
    r = sh(["dvc", "repro"], repo, env)
    assert stages_run(r.stdout) == {"registry", "register"}, r.stdout
    assert "mlflow.db does not exist" in r.stdout and f"(v{named}) no longer describes it" in r.stdout
    reg = json.loads((repo / "reports/register.json").read_text())
    assert (reg["version"], reg["alias"]) == (1, "champion")
    assert version_tag(repo / "mlflow.db", env) == reg["candidate"]
    # healthy again: only the check runs, and the lock it leaves is the lock of the run that registered
    lock = (repo / "dvc.lock").read_text()
    again = sh(["dvc", "repro"], repo, env)
    assert stages_run(again.stdout) == {"registry"} and (repo / "dvc.lock").read_text() == lock
    # another registry (a team's server, here another sqlite store): register runs again, into it
    other = tmp_path / "team.db"
    switched = sh(["dvc", "repro"], repo, {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{other}"})
    assert stages_run(switched.stdout) == {"registry", "register"}, switched.stdout
    assert json.loads((repo / "reports/registry.json").read_text())["registry"] == f"sqlite:///{other}"
    assert version_tag(other, env) == reg["candidate"]
