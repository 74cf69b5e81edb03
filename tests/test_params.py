import subprocess
import sys

import pytest
import yaml
from ruamel.yaml import YAML

from conftest import ROOT
from medaug.errors import MedaugError
from medaug.params import Params, load_params, parse_params


def test_shipped_params_parse_and_match_defaults():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params)
    assert p.train.variants == ["original", "augmented"]
    assert p.model_ref("gemma270m") == "gemma-3-270m"


@pytest.mark.parametrize("raw, fragment", [
    ({"train": {"learning_rat": 1e-4}}, "unknown key 'train.learning_rat'"),
    ({"teacher": {"backend": "anthropic"}}, "teacher.backend = 'anthropic' is not allowed (allowed: local, openai)"),
    ({"train": {"batch_size": "four"}}, "train.batch_size = 'four' must be int"),
    ({"train": {"lora": {"r": 8, "alfa": 1}}}, "unknown key 'train.lora.alfa'"),
    ({"data": {"fold": 10}}, "data.fold = 10 is out of range"),
    ({"train": {"variants": ["original", "fancy"]}}, "train.variants[1] = 'fancy' is not allowed"),
    ({"train": {"models": ["nope"]}}, "train.models names 'nope'"),
    ({"train": {"learning_rate": 0}}, "train.learning_rate must be > 0"),
    ({"pretrain": {"models": ["gemma270m"]}, "train": {"models": []}}, "pretrain.models names 'gemma270m', which is "
     "not in train.models"),
    ({"register": {"policy": "best"}}, "register.policy = 'best' is not allowed (allowed: higher, mcnemar)"),
    ({"evaluate": {"teacher": {"modle": "x"}}}, "unknown key 'evaluate.teacher.modle'"),
])
def test_bad_params_name_the_key(raw, fragment):
    with pytest.raises(MedaugError) as e:
        parse_params(raw)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_ints_are_accepted_for_floats():
    assert parse_params({"train": {"epochs": 2}}).train.epochs == 2.0


def test_cli_check_params_exits_nonzero_with_one_line(tmp_path):
    raw = YAML(typ="safe", pure=True).load((ROOT / "params.yaml").read_text())
    raw["filter"]["ngram"] = 3
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw))
    r = subprocess.run([sys.executable, "-m", "medaug.cli", "check-params", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: params.yaml: unknown key 'filter.ngram' (known keys here: "
                                "steps, min_question_chars, max_question_chars, dedup, decontaminate, judge, balance)")


def test_a_strategys_teacher_override_is_checked_with_its_key_path():
    from medaug.errors import MedaugError
    from medaug.params import parse_params
    p = parse_params({"generate": {"teachers": {"new": {"backend": "openai", "model": "gpt-4o-mini"}}}})
    assert (p.teacher_for("new").model, p.teacher_for("new").seed) == ("gpt-4o-mini", p.teacher.seed)
    assert p.teacher_for("rewrite") is p.teacher
    with pytest.raises(MedaugError, match=r"unknown key 'generate.teachers.new.modle'"):
        parse_params({"generate": {"teachers": {"new": {"modle": "x"}}}})
    with pytest.raises(MedaugError, match=r"generate.teachers.judge: not a strategy"):
        parse_params({"generate": {"teachers": {"judge": {"model": "x"}}}})
