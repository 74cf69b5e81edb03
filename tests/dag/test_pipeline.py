"""End to end, as a user runs it: `dvc repro` in a fresh git repo with tiny models and a real OpenAI-compatible
teacher on 127.0.0.1 (built once per test run: tests/dag/conftest.py), then the champion pulled from the MLflow
registry in a fresh process. The tests of this module run in order on one clone: some change it (a forced
registration, a recipe change) and later ones count on that."""

import json
from pathlib import Path

import pytest
import yaml

from medaug import headline
from support.paths import PARAMS_READ
from support.pipeline import DAPT, SENTINEL_KEY, VARIANTS, per_variant
from support.process import sh, stages_run
from support.project import champion_vs_evaluate



def test_repro_builds_every_stage_and_registers_a_champion(project):
    repo = project["repo"]
    assert stages_run(project["first"]) == {
        "prepare", "generate", "filter", "view", "zero-shot@tiny", "pretrain@tiny", "evaluate-teacher", "registry",
        "register", "compare",
        *per_variant("dataset@{v}", "train@tiny-{v}-0", "evaluate@tiny-{v}-0"),
        *per_variant("train-dapt@tiny-{v}-0", "evaluate-dapt@tiny-{v}-0", variants=DAPT)}
    # issue 32: each stage ends with a line naming what it wrote (registry and register name the registry)
    said = project["first_log"].splitlines()
    for stage in stages_run(project["first"]) - {"registry", "register"}:
        assert any(line.startswith(f"{stage}: wrote ") for line in said), (stage, project["first_log"][-3000:])
    test = [json.loads(x) for x in (repo / "data/prepared/test.jsonl").read_text().splitlines()]
    for name in ("tiny-original-0", "tiny-augmented-0", "tiny-zero-shot", "tiny-dapt-augmented-0", "teacher"):
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
    assert project["requests"], "the teacher server saw no request"


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
    # one `dvc repro`, one group: every run of it carries the same medaug.group (commit + params.yaml), and is
    # nested in the one pipeline run of that group, which spans them
    groups = {r.data.tags.get("medaug.group") for r in runs.values()}
    assert len(groups) == 1 and None not in groups, groups
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs.values()}
    assert len(parents) == 1 and None not in parents, parents
    pipeline = client.get_run(parents.pop())
    assert pipeline.data.tags["medaug.pipeline"] == "true" and pipeline.data.tags["medaug.group"] == groups.pop()
    assert pipeline.info.start_time <= min(r.info.start_time for r in runs.values())
    assert pipeline.info.end_time >= max(r.info.start_time for r in runs.values())
    # a stage's run spans its work: the training's run is at least as long as the training
    run = runs["train@tiny-augmented-0"]
    assert (run.info.end_time - run.info.start_time) / 1000 >= run.data.metrics["train_runtime_s"], run.info
    # the view stage's run holds a row per generated item as an MLflow table (issue 35), and the page
    funnel = json.loads((repo / "reports/funnel.json").read_text())
    table = json.loads(Path(client.download_artifacts(runs["view"].info.run_id, "items.json")).read_text())
    assert len(table["data"]) == runs["view"].data.metrics["items"] == funnel["in"]
    assert table["columns"][:4] == ["id", "fate", "step", "reason"]
    assert sum(row[1] == "kept" for row in table["data"]) == funnel["kept"]
    assert {a.path for a in client.list_artifacts(runs["view"].info.run_id)} == {"items.json", "view.html"}


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
                        (["evaluate", "tiny", "dapt-augmented"], "evaluate-dapt@tiny-augmented-0"),
                        (["pretrain", "tiny"], "pretrain@tiny")):
        r = sh(["medaug", *args], project["repo"], project["env"])
        assert f"dvc repro --single-item {stage}" in r.stderr and "didn't change" in r.stdout, (r.stdout, r.stderr)

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
    rounds_plots = {"Accuracy by round (round 0 is original, mean over train.seeds)",
                    "Accuracy against teacher cost so far (rounds, USD, mean over train.seeds)"}
    profile_plots = {"Generated questions: novelty (1 - MiniLM cosine to the nearest train question)",
                     "Generated questions: distinct-2 against as many train questions (1 = as varied)"}
    assert set(plots) == {"plots/funnel.json", "plots/candidates.json", "plots/curves/train.json",
                          "plots/curves/dev.json", *recipes_plots, *rounds_plots, *profile_plots,
                          *(f"plots/{kind}/{n}.json" for kind in ("confusion", "per_class")
                            for n in (*candidates, "tiny-zero-shot", "teacher"))}
    assert spec("plots/confusion/tiny-original-0.json")["title"]["text"].startswith("Confusion matrix")
    for title in rounds_plots:  # no rounds here: each model's round 0 (original), a point to start from
        assert [(r["recipe"], r["round"]) for r in spec(title)["data"]["values"]] == [("tiny-original", 0)]
    profile = json.loads((repo / "reports/profile.json").read_text())
    for title in profile_plots:  # a bar per group: the train split, each strategy and teacher's (generated, kept),
        assert [r["group"] for r in spec(title)["data"]["values"]] == ["train split"] + [  # each recipe's
            f"{g['strategy']} · {g['teacher']} · {g['stage']}" for g in profile["groups"]] + ["all kept"] + [
            f"recipe {r['recipe']}" for r in profile["recipes"]]
    assert {g["stage"] for g in profile["groups"]} == {"generated", "kept"} and profile["recipes"]
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
    # `half`: the new items alone (kept holds rewrites too), then a seeded half of them, in kept order
    new = [r for r in kept if r["source"] == "new"]
    assert new and len(new) < len(kept)
    half = sets["half"][len(train):]
    assert sets["half"][:len(train)] == train and len(half) == round(len(new) / 2) > 0
    assert [r for r in new if r in half] == half  # a subset of the new items, in kept order
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
    assert ran == {"dataset@half", "train@tiny-half-0", "evaluate@tiny-half-0", "compare", "registry", "register",
                   "view"}, ran  # view: the profile of each recipe's generated items
    assert len(records("data/train/half.jsonl")) == len(train) + round(len(new) * 0.75)
    half = next(r for r in json.loads((repo / "reports/profile.json").read_text())["recipes"] if r["recipe"] == "half")
    assert half["n"] == round(len(new) * 0.75)


def test_a_filter_param_change_reruns_filter_and_downstream_never_generate(project):
    repo, env = project["repo"], project["env"]
    params = (repo / "params.yaml").read_text()
    try:
        (repo / "params.yaml").write_text(params.replace("max_share: 0.5", "max_share: 0.6"))
        ran = stages_run(sh(["dvc", "repro", "--dry"], repo, env).stdout)
        assert "filter" in ran and not ran & {"prepare", "generate", "train@tiny-original-0"}, ran
    finally:
        (repo / "params.yaml").write_text(params)


# declared, and read only in other configurations than this project's
READ_ONLY_SOMETIMES = {
    "generate": ["filter.decontaminate.ngram"],  # when a strategy reads the corpus (grounded, progressive)
    "prepare": ["task.shuffle_options", "task.shuffle_seed"],  # tasks with given splits (multiple choice)
    # a recipe's data card names its teachers and funnel steps: recipes that generate (augmented, half)
    **{f"dataset@{v}": ["teacher", "generate.teachers", "filter.steps"] for v in ("original", "why")},
    "register": ["evaluate.seed"],  # the bootstrap of Δ vs the champion: from the second registration on
}


def test_every_stage_reads_exactly_the_params_it_declares(project):
    """Issue 31: every stage of the build ran under the read check (MEDAUG_CHECK_PARAMS, tests/conftest.py): none
    read a key its dvc.yaml entry leaves out (it would have failed), and every declared key was read."""
    folder = project["repo"] / PARAMS_READ
    seen = {f.stem: json.loads(f.read_text()) for f in folder.glob("*.json")}
    assert set(seen) >= {"prepare", "generate", "filter", "register", "compare", "train@tiny-original-0",
                         "evaluate@tiny-original-0", "zero-shot@tiny", "evaluate-teacher", "dataset@why"}, sorted(seen)
    for stage, r in seen.items():
        assert r["undeclared"] == [], stage
        unread = [k for k in r["declared"] if not any(x == k or x.startswith(k + ".") or k.startswith(x + ".")
                                                      for x in r["read"])]
        assert set(unread) <= set(READ_ONLY_SOMETIMES.get(stage, [])), \
            f"{stage} declares params it never reads: {unread}"


def test_a_param_a_stage_reads_marks_it_stale(project):
    """Issue 31: evaluate.ci_method (every CI), task.shuffle_options (prepare reorders the options) and cpu.isa
    (the kernels of training and scoring) are declared by the stages that read them."""
    repo, env = project["repo"], project["env"]
    text = (repo / "params.yaml").read_text()
    try:
        for old, new, stages in (("ci_method: bca", "ci_method: percentile",
                                  {"evaluate@tiny-original-0", "zero-shot@tiny", "register"}),
                                 ("shuffle_options: false", "shuffle_options: true", {"prepare"}),
                                 ("isa: avx2", "isa: native", {"train@tiny-original-0", "evaluate@tiny-original-0",
                                                               "zero-shot@tiny"})):
            assert text.count(old) == 1, old
            (repo / "params.yaml").write_text(text.replace(old, new))
            stale = set(json.loads(sh(["dvc", "status", "--json"], repo, env).stdout))
            assert stages <= stale, (new, sorted(stale))
    finally:
        (repo / "params.yaml").write_text(text)


def test_editing_the_bytes_of_the_source_data_reruns_prepare_and_what_follows(project):
    """Issue 31: data.source (here the bundled sample, as params.yaml names it) is a dep of prepare, so one changed
    label in it marks prepare stale; once prepare has run on it, the stages that read its outputs are stale."""
    repo, env = project["repo"], project["env"]
    source = repo / yaml.safe_load((repo / "params.yaml").read_text())["data"]["source"]
    text = source.read_text()
    try:
        pmid, record = next(iter(json.loads(text).items()))
        edited = json.loads(text)
        edited[pmid]["final_decision"] = {"yes": "no"}.get(record["final_decision"], "yes")
        source.write_text(json.dumps(edited))
        status = json.loads(sh(["dvc", "status", "--json"], repo, env).stdout)
        assert status["prepare"] == [{"changed deps": {source.relative_to(repo).as_posix(): "modified"}}], status
        sh(["dvc", "repro", "--single-item", "prepare"], repo, env)
        stale = set(json.loads(sh(["dvc", "status", "--json"], repo, env).stdout))
        assert {"dataset@original", "train@tiny-original-0", "evaluate@tiny-original-0", "register"} <= stale, stale
    finally:
        source.write_text(text)
        sh(["dvc", "repro", "--single-item", "prepare"], repo, env)
    assert not {"prepare", "dataset@original", "train@tiny-original-0"} & \
        set(json.loads(sh(["dvc", "status", "--json"], repo, env).stdout))


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
            "max_question_chars, dedup, decontaminate, judge, balance, teacher)"]
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




def test_quiet_stages_print_nothing_and_training_logs_no_dict_per_step(project):
    """Issue 32: `medaug -q` runs a training and a scoring stage (forced) and nothing reaches stdout or stderr: no
    progress bar, library warning or DVC line. At the default level the training shows its bar and the dev scores
    when they are computed, not the loss dict of every step. Last in the module: each forced run adds an MLflow
    run, which the tests above count."""
    repo, env = project["repo"], project["env"]
    for args in (["train", "tiny", "original"], ["evaluate", "tiny", "original"]):
        r = sh(["medaug", "-q", *args, "--force"], repo, env)
        assert (r.stdout, r.stderr) == ("", ""), (args, r.stdout, r.stderr)
    r = sh(["medaug", "train", "tiny", "original", "--force"], repo, env)
    out = r.stdout + r.stderr
    assert "Running stage 'train@tiny-original-0'" in out and "'eval_loss'" in out, out
    assert "{'loss'" not in out and "FutureWarning" not in out and "UserWarning" not in out, out
    assert any(line.startswith("train@tiny-original-0: wrote models/tiny-original-0/ and reports/train/") and
               "dev accuracy" in line for line in r.stderr.splitlines()), r.stderr
