"""Rounds (issue 34) without running them: round candidates' names and stages, the params that declare rounds,
the random control a targeted round is compared with, and dvc.yaml's round stages as `medaug rounds --write` writes
them. The rounds run in a real DAG: tests/dag/test_rounds.py."""

import shutil

import pytest
from ruamel.yaml import YAML

from medaug.dag import check_rounds, write_rounds
from medaug.errors import MedaugError
from medaug.evaluate.compare import control_of
from medaug.report import rounds_table
from medaug.params import load_params, parse_params
from medaug.paths import Candidate, ProbeIO, TeachIO, TrainIO
from medaug.targeting import check_round
from support.paths import ROOT

ROUNDS = {"targeted": {"strategies": ["rewrite", "new"], "rounds": 2, "per_round": 5, "pick": "errors"},
          "control": {"strategies": ["rewrite", "new"], "rounds": 2, "per_round": 5, "pick": "random"}}


def params(**train) -> object:
    return parse_params({"variants": {"original": {}, **ROUNDS}, "train": {"variants": ["original"], **train}})


def test_a_round_candidate_names_its_stages_training_set_and_student_before():
    c = Candidate.of_round("gemma270m", "targeted", 2, 1)
    assert (c.name, c.round, c.recipe) == ("gemma270m-targeted-r2-1", 2, "targeted")
    assert c.stage("train") == "train-r2@gemma270m-targeted-1" and c.stage("teach") == "teach-r2@gemma270m-targeted-1"
    assert c.previous == Candidate("gemma270m", "targeted-r1", 1)
    assert c.previous.previous == Candidate("gemma270m", "original", 1)  # round 0
    assert str(TrainIO.at(c).train) == "data/rounds/gemma270m-targeted-r2-1/train.jsonl"
    io = TeachIO.at(Candidate.of_round("m", "targeted", 1, 0))
    assert (str(io.probe), str(io.before)) == ("data/probe/m-targeted-r1-0.jsonl", "data/train/original.jsonl")
    probe = ProbeIO.at(Candidate.of_round("m", "targeted", 1, 0))
    assert (str(probe.adapter), str(probe.out)) == ("models/m-original-0", "data/probe/m-targeted-r1-0.jsonl")
    assert Candidate("m", "augmented", 0).round is None and Candidate.recipe_of("dapt-augmented") == "augmented"


def test_round_candidates_follow_the_train_candidates():
    p = params(rounds=["targeted", "control"], seeds=[0, 1])
    names = [c.name for c in p.candidates()]
    assert names[:2] == ["gemma270m-original-0", "gemma270m-original-1"]
    assert names[2:] == [f"gemma270m-{r}-r{k}-{s}" for r in ("targeted", "control") for k in (1, 2) for s in (0, 1)]


@pytest.mark.parametrize("raw, says", [
    ({"train": {"variants": ["original", "targeted"]}}, "has rounds: list it in train.rounds"),
    ({"train": {"variants": ["original"], "rounds": ["original"]}}, "no recipe of `variants` with rounds >= 1"),
    ({"train": {"variants": ["augmented"], "rounds": ["targeted"]}}, "add 'original' to train.variants"),
    ({"variants": {"x-r2": {}}}, "may not end in -r<number>"),
    ({"variants": {"targeted": {"rounds": 2}}}, "has rounds but no strategies"),
    ({"variants": {"targeted": {"strategies": ["new"], "rounds": 1, "per_round": 0}}}, "per_round >= 1"),
    ({"variants": {"targeted": {"strategies": ["new"], "rounds": 1, "fraction": 0.5}}}, "do not apply"),
])
def test_bad_rounds_params_fail_naming_the_key(raw, says):
    base = {"variants": {"original": {}, "augmented": {"strategies": ["rewrite"]}, **ROUNDS}}
    for section, value in raw.items():
        base[section] = {**base.get(section, {}), **value}
    with pytest.raises(MedaugError, match="params.yaml") as e:
        parse_params(base)
    assert says in str(e.value)


def test_a_targeted_round_is_compared_with_the_same_round_of_its_random_control():
    p = params(rounds=["targeted", "control"])
    assert control_of(p, "targeted-r1") == "control-r1" and control_of(p, "targeted-r2") == "control-r2"
    assert control_of(p, "control-r1") is None and control_of(p, "original") is None
    other = parse_params({"variants": {"original": {}, "targeted": ROUNDS["targeted"],
                                       "control": {**ROUNDS["control"], "per_round": 6}},
                          "train": {"variants": ["original"], "rounds": ["targeted", "control"]}})
    assert control_of(other, "targeted-r1") is None  # another budget is no control


@pytest.fixture
def project(tmp_path):
    """dvc.yaml and params.yaml of the project in a folder of their own, the code they name linked in."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("src", "stages"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def set_params(root, **changes) -> None:
    yaml = YAML()
    doc = yaml.load((root / "params.yaml").read_text())
    for key, value in changes.items():
        section, name, *rest = key.split("__")
        node = doc[section][name]
        if rest:
            node[rest[0]] = value
        else:
            doc[section][name] = value
    with open(root / "params.yaml", "w") as f:
        yaml.dump(doc, f)


def test_the_shipped_dvc_yaml_has_the_round_stages_of_its_recipes(project):
    assert check_rounds(ROOT) == []  # train.rounds: [] -> the matrices are empty: no round stage runs
    set_params(project, train__rounds=["targeted", "targeted-random"])
    assert check_rounds(project) == []  # a params change: the stages fit 2-round recipes (tests/dag run them)


def test_rounds_write_writes_each_round_as_stages_for_another_depth(project):
    shipped = (project / "dvc.yaml").read_text()
    set_params(project, variants__targeted__rounds=3, train__rounds=["targeted"])
    assert check_rounds(project) == ["dvc.yaml: stage " + f"{kind}-r3 is missing (the recipes' rounds ask for it): "
                                     "run `medaug rounds --write`" for kind in ("probe", "teach", "train", "evaluate")]
    names = write_rounds(project)
    assert names == [f"{kind}-r{k}" for k in (1, 2, 3) for kind in ("probe", "teach", "train", "evaluate")]
    assert check_rounds(project) == []
    written = (project / "dvc.yaml").read_text()
    assert write_rounds(project) == names and (project / "dvc.yaml").read_text() == written  # idempotent
    stages = YAML(typ="safe").load(written)["stages"]
    assert list(stages).index("evaluate-r3") + 1 == list(stages).index("compare")
    train, r2 = stages["train"], stages["train-r2"]
    assert r2["cmd"] == "${train.launcher} stages/train.py ${item.model} ${item.recipe}-r2 ${item.seed}"
    # train-r<k> declares what train does, for the round's candidate and training set
    assert [d for d in r2["deps"] if "item" not in d] == [d for d in train["deps"] if "item" not in d]
    assert "data/rounds/${item.model}-${item.recipe}-r2-${item.seed}/train.jsonl" in r2["deps"]
    assert r2["params"] == [x.replace("${item.variant}", "${item.recipe}") for x in train["params"]]
    assert all(stages[f"{kind}-r{k}"]["matrix"] == {"model": "${train.models}", "recipe": "${train.rounds}",
                                                     "seed": "${train.seeds}"}
               for kind in ("probe", "teach", "train", "evaluate") for k in (1, 2, 3))
    assert "models/${item.model}-original-${item.seed}" in stages["probe-r1"]["deps"]
    assert "models/${item.model}-${item.recipe}-r2-${item.seed}" in stages["probe-r3"]["deps"]
    assert "data/rounds/${item.model}-${item.recipe}-r1-${item.seed}/train.jsonl" in stages["teach-r2"]["deps"]
    shutil.copy(ROOT / "params.yaml", project / "params.yaml")  # the shipped recipes' 2 rounds again
    assert write_rounds(project)[-1] == "evaluate-r2" and (project / "dvc.yaml").read_text() == shipped


def test_params_that_ask_for_no_such_round_stop_the_stage():
    p = load_params(ROOT / "params.yaml")  # train.rounds: []
    with pytest.raises(MedaugError, match=r"does not list 'targeted'"):
        check_round(p, Candidate.of_round("gemma270m", "targeted", 1, 0))
    p = params(rounds=["targeted"])
    check_round(p, Candidate.of_round("gemma270m", "targeted", 2, 0))
    with pytest.raises(MedaugError, match=r"run `medaug rounds --write`"):
        check_round(p, Candidate.of_round("gemma270m", "targeted", 3, 0))


def test_recipes_run_together_need_the_same_rounds():
    with pytest.raises(MedaugError, match="different rounds"):
        parse_params({"variants": {"original": {}, **ROUNDS, "deep": {**ROUNDS["targeted"], "rounds": 3}},
                      "train": {"variants": ["original"], "rounds": ["targeted", "deep"]}})


def test_the_report_sets_each_targeted_round_against_its_control():
    def row(variant, acc, vs=None):
        return {"model": "m", "variant": variant, "accuracy": {"mean": acc}, **({"vs_control": vs} if vs else {})}

    vs = {"variant": "control-r1", "delta": 0.05, "low": -0.01, "high": 0.11, "p_value": 0.12}
    table = {"recipes": [row("original", 0.6), row("targeted-r1", 0.65, vs), row("control-r1", 0.6)]}
    assert rounds_table(table)[-1] == "| m-targeted-r1 | 0.650 | m-control-r1 | 0.600 | +0.050 [-0.010, +0.110] | 0.120 |"
    assert rounds_table({"recipes": [row("original", 0.6)]}) == []


def test_a_round_champion_ships_its_own_data_card(tmp_path):
    """export.card (the shipped README, as register's description): a round candidate's card is its teach stage's
    reports/dataset/<candidate>.md, not the recipe's (a recipe with rounds builds no set of its own)."""
    from medaug.export import card

    datasets = tmp_path / "reports/dataset"
    datasets.mkdir(parents=True)
    (datasets / "m-targeted-r2-0.md").write_text("# Data card: `m-targeted-r2-0`, round 2 of recipe `targeted`\n")
    (datasets / "targeted.md").write_text("# not this one\n")
    meta = {"base": "tiny-llama", "model": "m", "variant": "targeted-r2", "seed": 0, "method": "lora"}
    text = card(params(rounds=["targeted"]), "m-targeted-r2-0", meta, True, tmp_path)
    assert "round 2 of recipe `targeted`" in text and "not this one" not in text
    assert Candidate("m", "targeted-r2", 0).training_set == "m-targeted-r2-0"
    assert Candidate("m", "augmented", 0).training_set == "augmented"
