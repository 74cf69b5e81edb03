"""`dvc exp run` with a new learning rate on a clone of the built pipeline: exactly the training and scoring
stages rerun, and `dvc params diff`, `dvc metrics diff` and `medaug report` tell a reviewer what changed."""

import json

import yaml

from support.dag import commit
from support.pipeline import DAPT, VARIANTS, per_variant
from support.process import sh, stages_run



def test_exp_run_with_new_learning_rate_reruns_only_train_evaluate_register(project):
    repo, env = project["repo"], project["env"]
    commit(repo, env, "first run")
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
    assert reg["version"] == 2 and reg["alias"] in ("champion", "challenger")  # v1: the first run
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


