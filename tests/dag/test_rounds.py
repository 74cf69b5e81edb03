"""The student in the loop (issue 34): a recipe with `rounds: 2` in a fresh git repo, tiny-llama as the student and
the HTTP test server as the teacher. Listing the recipe in train.rounds is all it takes: the shipped dvc.yaml has the
round stages of 2-round recipes (medaug/dag.py). They chain from the `original` candidate, pick as parents exactly
the train items the student before got wrong (never a generated one), rerun nothing the second time, and rerun from
round 1 (not round 0) when `per_round` changes. The pick rules on hand-made scores: tests/unit/test_targeting.py;
the dvc.yaml writer: tests/unit/test_rounds.py."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from medaug.data.schema import read_records
from medaug.targeting import margin
from support.dag import task_dag
from support.openai_server import pubmedqa_responder
from support.process import sh, stages_run

PER_ROUND = 3


@pytest.fixture(scope="module")
def rounds_project(tmp_path_factory):
    def edit(params: dict) -> None:
        params["generate"]["per_strategy"] = 4
        params["variants"]["targeted"] = {"strategies": ["rewrite", "new"], "rounds": 2, "per_round": PER_ROUND,
                                          "pick": "errors"}
        params["train"]["rounds"] = ["targeted"]
        params["teacher"]["prices"] = {"fake-teacher": {"input": 100.0, "output": 200.0}}  # USD per 1M tokens
        params["register"]["model_name"] = "medaug-rounds"

    def setup(repo) -> None:  # a params change only: dvc.yaml's round stages already fit 2-round recipes
        sh([str(Path(sys.executable).parent / "medaug"), "rounds"], repo, None)

    yield from task_dag(tmp_path_factory, "rounds", edit, pubmedqa_responder, setup, variants=("original",))


def jsonl(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def expected_parents(probe: list[dict]) -> list[str]:
    """What `pick: errors` must choose: the wrong ones, most confidently wrong first, at most PER_ROUND."""
    wrong = sorted((r for r in probe if r["prediction"] != r["gold"]), key=lambda r: (margin(r), r["id"]))
    return [r["id"] for r in wrong[:PER_ROUND]]


def test_rounds_chain_from_original_and_pick_the_errors_of_the_student_before(rounds_project):
    repo = rounds_project["repo"]
    ran = stages_run(rounds_project["first"].stdout)
    assert {"train@tiny-original-0", "probe-r1@tiny-targeted-0", "teach-r1@tiny-targeted-0", "train-r1@tiny-targeted-0",
            "evaluate-r1@tiny-targeted-0", "probe-r2@tiny-targeted-0", "teach-r2@tiny-targeted-0",
            "train-r2@tiny-targeted-0", "evaluate-r2@tiny-targeted-0", "compare", "register"} <= ran
    # the chain as DVC sees it: each round reads the student and the training set of the round before
    dag = sh(["dvc", "dag", "--dot", "evaluate-r2@tiny-targeted-0"], repo, rounds_project["env"]).stdout
    for before, after in (("train@tiny-original-0", "probe-r1@tiny-targeted-0"),
                          ("probe-r1@tiny-targeted-0", "teach-r1@tiny-targeted-0"),
                          ("dataset@original", "teach-r1@tiny-targeted-0"),
                          ("teach-r1@tiny-targeted-0", "train-r1@tiny-targeted-0"),
                          ("train-r1@tiny-targeted-0", "probe-r2@tiny-targeted-0"),
                          ("teach-r1@tiny-targeted-0", "teach-r2@tiny-targeted-0"),
                          ("probe-r2@tiny-targeted-0", "teach-r2@tiny-targeted-0"),
                          ("teach-r2@tiny-targeted-0", "train-r2@tiny-targeted-0"),
                          ("train-r2@tiny-targeted-0", "evaluate-r2@tiny-targeted-0")):
        assert f'"{before}" -> "{after}"' in dag, (before, after, dag)

    train_ids = {r.id for r in read_records(repo / "data/prepared/train.jsonl")}
    for k, student in ((1, "tiny-original-0"), (2, "tiny-targeted-r1-0")):
        probe = jsonl(repo / f"data/probe/tiny-targeted-r{k}-0.jsonl")
        assert json.loads((repo / f"reports/probe/tiny-targeted-r{k}-0.json").read_text())["student"] == student
        assert sorted(r["id"] for r in probe) == sorted(train_ids)  # the train split, nothing else
        parents = [r["id"] for r in jsonl(repo / f"data/rounds/tiny-targeted-r{k}-0/parents.jsonl")]
        assert parents == expected_parents(probe) and parents  # the student's errors, capped at per_round
        assert set(parents) <= train_ids  # never a generated item
        report = json.loads((repo / f"reports/dataset/tiny-targeted-r{k}-0.json").read_text())
        assert report["student"] == student and report["parents"]["n"] == len(parents) == report["parents"]["wrong"]
        assert report["asked"] == 2 * len(parents)  # one request per parent and strategy
        generated = read_records(repo / f"data/rounds/tiny-targeted-r{k}-0/generated.jsonl")
        assert {r.parent_id for r in generated} <= set(parents)
        assert report["funnel"]["in"] == report["asked"] and report["kept"] == report["funnel"]["kept"]
        card = (repo / f"reports/dataset/tiny-targeted-r{k}-0.md").read_text()  # what register embeds if it wins
        assert card.startswith(f"# Data card: `tiny-targeted-r{k}-0`, round {k} of recipe `targeted`")
    # each round trains on the one before and what it kept; round 2's items are new to round 1's set
    r0 = read_records(repo / "data/train/original.jsonl")
    r1 = read_records(repo / "data/rounds/tiny-targeted-r1-0/train.jsonl")
    r2 = read_records(repo / "data/rounds/tiny-targeted-r2-0/train.jsonl")
    kept1 = read_records(repo / "data/rounds/tiny-targeted-r1-0/kept.jsonl")
    kept2 = read_records(repo / "data/rounds/tiny-targeted-r2-0/kept.jsonl")
    assert kept1 and r1 == r0 + kept1 and r2 == r1 + kept2
    assert not {r.item_text for r in kept2} & {r.item_text for r in r1}
    # every round's student is a candidate; the recipes table and the rounds chart have them
    table = json.loads((repo / "reports/variants.json").read_text())
    rows = {r["variant"]: r for r in table["recipes"]}
    assert set(rows) == {"original", "targeted-r1", "targeted-r2"}
    assert rows["targeted-r2"]["generated"] == len(kept1) + len(kept2) and rows["targeted-r2"]["round"] == 2
    # what each round cost, and the chain so far: what compare charges the round's row
    cost = [json.loads((repo / f"reports/dataset/tiny-targeted-r{k}-0.json").read_text()) for k in (1, 2)]
    assert 0 < cost[0]["cost_usd"] == cost[0]["cost_usd_total"] and cost[1]["cost_usd"] > 0
    assert cost[1]["cost_usd_total"] == pytest.approx(cost[0]["cost_usd_total"] + cost[1]["cost_usd"])
    assert rows["targeted-r2"]["teacher_cost_usd"] == pytest.approx(cost[1]["cost_usd_total"])
    chart = json.loads((repo / "plots/rounds.json").read_text())
    assert [(r["recipe"], r["round"]) for r in chart] == [("tiny-targeted", 0), ("tiny-targeted", 1),
                                                            ("tiny-targeted", 2)]
    assert chart[2]["accuracy"] == rows["targeted-r2"]["accuracy"]["mean"]
    # `medaug report`: a row per round with why it did what it did, and its dev and test accuracy
    out = sh(["medaug", "report"], repo, rounds_project["env"]).stdout
    row = next(line for line in out.splitlines() if line.startswith("| tiny-targeted-r2-0 | tiny-targeted-r1-0: "))
    test = json.loads((repo / "metrics/eval/tiny-targeted-r2-0.json").read_text())["accuracy"]
    assert f"| {len(kept2)} |" in row and f"| {test:.3f} [" in row


def test_a_second_repro_runs_nothing_and_per_round_reruns_from_round_one(rounds_project):
    repo, env = rounds_project["repo"], rounds_project["env"]
    assert stages_run(sh(["dvc", "repro"], repo, env).stdout) == {"registry"}
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["variants"]["targeted"]["per_round"] = PER_ROUND - 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["medaug", "rounds"], repo, env)  # per_round changes no stage: dvc.yaml still matches
    # round 1's student is all the rest needs to show where the rerun starts (round 2 only repeats round 1's stages)
    ran = stages_run(sh(["dvc", "repro", "train-r1@tiny-targeted-0"], repo, env).stdout)
    assert {"teach-r1@tiny-targeted-0", "train-r1@tiny-targeted-0"} <= ran
    assert not ran & {"train@tiny-original-0", "probe-r1@tiny-targeted-0", "generate", "filter", "dataset@original"}, ran
    parents = jsonl(repo / "data/rounds/tiny-targeted-r1-0/parents.jsonl")
    wrong = expected_parents(jsonl(repo / "data/probe/tiny-targeted-r1-0.jsonl"))
    assert len(parents) == min(PER_ROUND - 1, len(wrong))


def test_rounds_params_without_their_stages_fail_in_one_line(rounds_project):
    repo, env = rounds_project["repo"], rounds_project["env"]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["variants"]["targeted"]["rounds"] = 1  # dvc.yaml still runs round 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = sh(["medaug", "rounds"], repo, env, check=False)
    assert r.returncode != 0 and "stage probe-r2 is beyond the recipes' rounds: run `medaug rounds --write`" in r.stderr
    for stage in ("probe-r2@tiny-targeted-0", "teach-r2@tiny-targeted-0"):
        r = sh(["dvc", "repro", "-s", "-f", stage], repo, env, check=False)
        assert r.returncode != 0 and "run `medaug rounds --write`" in r.stdout + r.stderr, stage
