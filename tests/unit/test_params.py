import shutil

import pytest
from ruamel.yaml import YAML

from medaug.augment import strategies
from medaug.errors import MedaugError
from medaug.filtering import steps as filter_steps
from medaug.params import Params, load_params, parse_params
from support.paths import ROOT

NAN, INF = float("nan"), float("inf")


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
    ({"train": {"variants": ["original", "fancy"]}}, "train.variants[1] = 'fancy' is no key of `variants` (known: "
     "original, augmented); add its recipe there"),
    ({"variants": {"dapt-x": {}}, "train": {"variants": ["dapt-x"]}}, "train.variants[0] = 'dapt-x': a variant name "
     "may not"),
    ({"variants": {"original": {}, "augmented": {"strategies": ["rewrit"]}}}, "variants.augmented.strategies[0] = "
     "'rewrit' is no strategy (known: "
     "grounded, mesh, new, progressive, rewrite)"),
    ({"generate": {"strategies": ["new", "textbook"]}}, "generate.strategies[1] = 'textbook' is no strategy"),
    ({"filter": {"steps": ["validate", "decontaminate", "dedupe"]}}, "filter.steps[2] = 'dedupe' is no filter step "
     "(known: balance, consistency, decontaminate, dedup, fidelity, judge, validate)"),
    ({"pretrain": {"models": ["gemma270m"], "variants": ["half"]}}, "pretrain.variants[0] = 'half' is not in "
     "train.variants (original, augmented)"),
    ({"variants": {"x": {"strategies": ["new"], "fraction": 0}}}, "variants.x.fraction must be in (0, 1] (got 0.0)"),
    ({"variants": {"x": {"strategies": ["new"], "max_items": -1}}}, "variants.x.max_items must be >= 0"),
    ({"variants": {"x": {"fraction": 0.5}}}, "variants.x selects generated items (teachers, min_judge_score, "
     "fraction or max_items) but lists no strategies"),
    ({"train": {"models": ["nope"]}}, "train.models names 'nope'"),
    ({"train": {"learning_rate": 0}}, "train.learning_rate must be > 0"),
    ({"pretrain": {"models": ["gemma270m"]}, "train": {"models": []}}, "pretrain.models names 'gemma270m', which is "
     "not in train.models"),
    ({"register": {"policy": "best"}}, "register.policy = 'best' is not allowed (allowed: higher, mcnemar)"),
    ({"evaluate": {"teacher": {"modle": "x"}}}, "unknown key 'evaluate.teacher.modle'"),
    # NaN / inf in any float, wherever it is (dvc exp run -S train.learning_rate=nan writes `.nan`)
    ({"train": {"learning_rate": NAN}}, "train.learning_rate = nan must be a finite number"),
    ({"train": {"epochs": INF}}, "train.epochs = inf must be a finite number"),
    ({"teacher": {"budget_usd": -INF}}, "teacher.budget_usd = -inf must be a finite number"),
    ({"teacher": {"prices": {"m": {"input": NAN}}}}, "teacher.prices.m.input = nan must be a finite number"),
    ({"generate": {"label_mix": {"yes": INF}}}, "generate.label_mix.yes = inf must be a finite number"),
    ({"filter": {"dedup": {"threshold": NAN}}}, "filter.dedup.threshold = nan must be a finite number"),
    ({"register": {"alpha": NAN}}, "register.alpha = nan must be a finite number"),
    ({"evaluate": {"teacher": {"top_p": NAN}}}, "evaluate.teacher.top_p = nan must be a finite number"),
    # values that used to pass and fail late or silently
    ({"teacher": {"temperature": -0.1}}, "teacher.temperature must be >= 0 (got -0.1)"),
    ({"teacher": {"top_p": 0}}, "teacher.top_p must be in (0, 1] (got 0.0)"),
    ({"teacher": {"top_p": 1.5}}, "teacher.top_p must be in (0, 1] (got 1.5)"),
    ({"generate": {"teachers": {"new": {"temperature": -1}}}}, "generate.teachers.new.temperature must be >= 0"),
    ({"evaluate": {"teacher": {"top_p": 2}}}, "evaluate.teacher.top_p must be in (0, 1]"),
    ({"task": {"max_seq_len": 0}}, "task.max_seq_len must be >= 1 (got 0)"),
    ({"train": {"lora": {"r": 0}}}, "train.lora.r and train.lora.alpha must be >= 1 (got 0, 16)"),
    ({"train": {"lora": {"dropout": 1.0}}}, "train.lora.dropout must be in [0, 1) (got 1.0)"),
    ({"train": {"lora": {"dropout": -0.1}}}, "train.lora.dropout must be in [0, 1) (got -0.1)"),
    ({"filter": {"min_question_chars": 600}}, "filter.min_question_chars must be <= filter.max_question_chars (got "
     "600 > 500: validate would drop every item)"),
    ({"generate": {"strategies": []}}, "generate.strategies is empty, so train.variants' 'augmented' (which adds "
     "rewrite, new items) would be the train split again"),
    ({"models": {"": "tiny-llama"}}, "models has an empty short name (for 'tiny-llama')"),
    ({"models": {"tiny": " "}, "train": {"models": ["tiny"]}}, "models.tiny is empty"),
    ({"train": {"models": [""]}}, "train.models[0] is an empty name"),
    ({"pretrain": {"models": [""]}}, "pretrain.models[0] is an empty name"),
    ({"teacher": {"max_failed_share": 1.5}}, "teacher.max_failed_share must be in [0, 1] (got 1.5)"),
    ({"teacher": {"max_failed_share": -0.1}}, "teacher.max_failed_share must be in [0, 1] (got -0.1)"),
    ({"generate": {"teachers": {"new": {"budget_usd": 5}}}}, "generate.teachers.new.budget_usd: the budget is per "
     "stage, not per strategy; set teacher.budget_usd, which caps the whole generate stage"),
    ({"generate": {"teachers": {"new": [{}, {"budget_usd": 5}]}}}, "generate.teachers.new[1].budget_usd: the budget "),
    ({"generate": {"teachers": {"new": []}}}, "generate.teachers.new is an empty list (give one or more teachers"),
    ({"generate": {"teachers": {"new": [{"model": "a"}, {"model": "a", "seed": 1}]}}},
     "generate.teachers.new lists the model 'a' twice; records and recipes tell teachers apart by `model`"),
    ({"generate": {"teachers": {"new": [{}, {"temperature": -1}]}}}, "generate.teachers.new[1].temperature must be >= 0"),
    ({"filter": {"decontaminate": {"ngram": 1000}}}, "filter.decontaminate.ngram must be 5-13 (got 1000): "),
    ({"filter": {"decontaminate": {"ngram": 4}}}, "filter.decontaminate.ngram must be 5-13 (got 4): "),
])
def test_bad_params_name_the_key(raw, fragment):
    """parse_params fails on a bad key or value; strategy and filter step names are checked against their
    registries (augment.strategies.check, filtering.steps.check: their stages and `medaug check-params` run them)."""
    with pytest.raises(MedaugError) as e:
        p = parse_params(raw)
        strategies.check(p)
        filter_steps.check(p)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_ints_are_accepted_for_floats():
    assert parse_params({"train": {"epochs": 2}}).train.epochs == 2.0


def test_a_strategys_teacher_override_is_checked_with_its_key_path():
    from medaug.errors import MedaugError
    from medaug.params import parse_params
    p = parse_params({"generate": {"teachers": {"new": {"backend": "openai", "model": "gpt-4o-mini"}}}})
    assert (p.teacher_for("new").model, p.teacher_for("new").seed) == ("gpt-4o-mini", p.teacher.seed)
    assert p.teacher_for("rewrite") is p.teacher
    with pytest.raises(MedaugError, match=r"unknown key 'generate.teachers.new.modle'"):
        parse_params({"generate": {"teachers": {"new": {"modle": "x"}}}})
    p = parse_params({"generate": {"teachers": {"new": [{}, {"model": "gpt-4o"}]}}})
    assert [tp.model for tp in p.teachers_for("new")] == [p.teacher.model, "gpt-4o"]
    assert p.teacher_for("new", "gpt-4o").model == "gpt-4o" and p.teacher_for("new") is p.teacher
    with pytest.raises(MedaugError, match=r"generate.teachers.judge: not a strategy"):
        strategies.check(parse_params({"generate": {"teachers": {"judge": {"model": "x"}}}}))


@pytest.mark.parametrize("raw", [
    {"generate": {"strategies": []}, "train": {"variants": ["original"]}},  # no augmented variant: nothing to make
    {"evaluate": {"teacher": {"budget_usd": 2.5}}},  # evaluate-teacher is its own stage, with its own budget
    {"teacher": {"temperature": 0, "top_p": 1, "max_failed_share": 1}},
    {"filter": {"decontaminate": {"ngram": 5}}},
    {"filter": {"decontaminate": {"ngram": 13}, "min_question_chars": 20, "max_question_chars": 20}},
    {"train": {"lora": {"r": 1, "alpha": 1, "dropout": 0}}},
])
def test_edge_values_that_are_allowed(raw):
    parse_params(raw)


def test_max_failed_share_defaults_to_zero_and_is_in_the_shipped_params():
    assert Params().teacher.max_failed_share == 0.0
    assert parse_params({"teacher": {"max_failed_share": 0.25}}).teacher.max_failed_share == 0.25
    raw = YAML(typ="safe", pure=True).load((ROOT / "params.yaml").read_text())
    assert raw["teacher"]["max_failed_share"] == 0


def test_non_utf8_params_yaml_names_the_line(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_bytes(b"data:\n  source: sample\n# r\xe9sum\xe9\n")
    with pytest.raises(MedaugError, match=r"params\.yaml:3: not UTF-8 .*re-encode the file as UTF-8"):
        load_params(bad)


def test_the_documented_paper_scale_overrides_apply_to_params_yaml(tmp_path):
    """README's one command for the papers' setting: `dvc exp run` with docs/paper-scale.overrides, applied here by
    DVC's own --set-param code to a copy of params.yaml, gives valid params with two teachers and three seeds."""
    from dvc.utils.hydra import apply_overrides

    from medaug.params import load_params

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "src/medaug/tasks", tmp_path / "src/medaug/tasks")
    apply_overrides(str(tmp_path / "params.yaml"), (ROOT / "docs/paper-scale.overrides").read_text().split())
    p = load_params(tmp_path / "params.yaml")
    for strategy in ("rewrite", "new"):
        assert [(tp.backend, tp.model) for tp in p.teachers_for(strategy)] == [("openai", "gpt-4o-mini"),
                                                                               ("openai", "gpt-4o")]
    assert {name: p.variants[name].teachers for name in p.train.variants} == {
        "original": [], "mini": ["gpt-4o-mini"], "full": ["gpt-4o"]}
    assert len(p.candidates()) == 9 + 12 and p.train.seeds == [0, 1, 2] and p.generate.per_strategy == 0
    # the targeted rounds and their control: 2 recipes x 2 rounds x 3 seeds, 60 parents a round
    assert p.train.rounds == ["targeted", "targeted-random"]
    assert [(p.variants[r].rounds, p.variants[r].per_round, p.variants[r].pick) for r in p.train.rounds] == [
        (2, 60, "errors"), (2, 60, "random")]
    assert p.teacher.price.input > 0 and p.baseline_teacher().model == "gpt-4o"


def test_params_yaml_lists_every_knob_with_the_code_default():
    """Every field the code reads is in params.yaml (the task file's keys come from the task file), with the value
    the code defaults to, so params.yaml is the whole configuration and a section left out means what it says."""
    import dataclasses

    from medaug.params import TASK_FILE_KEYS

    raw = YAML(typ="safe", pure=True).load((ROOT / "params.yaml").read_text())
    problems = []

    def walk(obj, section, path):
        names = {f.name for f in dataclasses.fields(obj)}
        problems.extend(f"params.yaml has {path}{k}, which the code does not read" for k in set(section) - names)
        for f in dataclasses.fields(obj):
            key, default = f"{path}{f.name}", getattr(obj, f.name)
            if path == "task." and f.name in TASK_FILE_KEYS:
                continue
            if f.name not in section:
                problems.append(f"{key} is missing from params.yaml (code default {default!r})")
            elif dataclasses.is_dataclass(default):
                walk(default, section[f.name], key + ".")
            elif key == "variants":  # the shipped recipes, among the project's own
                for name, recipe in default.items():
                    parsed = parse_params({"variants": section[f.name], "train": {"variants": [name]}})
                    if parsed.variants[name] != recipe:
                        problems.append(f"variants.{name} differs from the code's")
            elif section[f.name] != default:
                problems.append(f"{key}: params.yaml {section[f.name]!r}, code default {default!r}")

    walk(Params(), raw, "")
    assert not problems, "\n".join(problems)


def test_one_candidate_value_parses_and_formats_names_stages_and_the_dapt_prefix():
    import re

    from medaug.paths import Candidate
    from support.paths import ROOT

    dapt = Candidate.dapt("tiny", "augmented", 0)
    assert (dapt.variant, dapt.recipe, dapt.from_pretraining, dapt.name, dapt.stage("train")) == (
        "dapt-augmented", "augmented", True, "tiny-dapt-augmented-0", "train-dapt@tiny-augmented-0")
    plain = Candidate("tiny", "original", 1)
    assert (plain.recipe, plain.from_pretraining, plain.name, plain.stage("evaluate")) == (
        "original", False, "tiny-original-1", "evaluate@tiny-original-1")
    base = Candidate("tiny", "zero-shot")
    assert (base.name, base.stage("evaluate")) == ("tiny-zero-shot", "zero-shot@tiny")
    p = parse_params({"pretrain": {"models": ["gemma270m"], "variants": ["augmented"]}})
    assert p.candidates() == [("gemma270m", "original", 0), ("gemma270m", "augmented", 0),
                              Candidate.dapt("gemma270m", "augmented", 0)]
    # the prefix is spelled in one place (issue 30): everything else asks Candidate
    spelled = re.compile(r'"dapt-"|startswith\("dapt|removeprefix\("dapt')
    hits = [f"{path.relative_to(ROOT)}:{n}" for path in sorted((ROOT / "src").rglob("*.py"))
            for n, line in enumerate(path.read_text().splitlines(), 1) if spelled.search(line)]
    assert len(hits) == 1 and hits[0].startswith("src/medaug/paths.py:"), hits


def test_under_the_read_check_a_stage_records_each_key_it_reads(tmp_path, monkeypatch):
    """Issue 31: the params object of a stage under MEDAUG_CHECK_PARAMS records the keys read (leaves, a mapping's
    keys, a whole mapping when iterated), not what `untraced` reads; without the check nothing is recorded."""
    import dataclasses

    from medaug import declared, params

    (tmp_path / "params.yaml").write_text("train:\n  learning_rate: 0.001\n")
    monkeypatch.setattr(params, "_reads", None)
    monkeypatch.setattr(params, "_loaded", None)  # both restored after the test
    assert params.reads() is None and params.load_params(tmp_path / "params.yaml").train.learning_rate == 0.001
    assert params.reads() is None  # not a DVC stage under the check
    monkeypatch.setenv("MEDAUG_CHECK_PARAMS", "1")
    monkeypatch.setenv("DVC_STAGE", "train@tiny-original-0")
    p = params.load_params(tmp_path / "params.yaml")
    assert params.reads() == set()  # what load_params validated is not a read
    p.train.lora.r, p.models["gemma270m"], p.variants["augmented"].strategies, p.task.choices
    with params.untraced():
        dataclasses.asdict(p)
    meta = params.asdict_without(p.train, {"seeds", "models", "variants"})
    assert "seeds" not in meta and meta["lora"]["r"] == p.train.lora.r
    read = params.reads()
    assert {"train.lora.r", "models.gemma270m", "variants.augmented.strategies", "task.choices",
            "train.learning_rate", "train.lora.alpha"} <= read
    assert not read & {"train.seeds", "train.models", "train", "train.lora", "teacher.model", "evaluate.seed"}
    list(p.variants)
    assert "variants" in params.reads()
    # what covers a read: the key or a section above it; a task file's keys by the file as a dependency
    keys, deps = ["train.lora", "variants.augmented", "task.max_seq_len"], {"src/medaug/tasks/pubmedqa.yaml"}
    assert declared.covered("train.lora.r", keys, deps, "src/medaug/tasks/pubmedqa.yaml")
    assert declared.covered("task.choices", keys, deps, "src/medaug/tasks/pubmedqa.yaml")
    assert not declared.covered("task.choices", keys, set(), "src/medaug/tasks/pubmedqa.yaml")
    assert not declared.covered("task.shuffle_options", keys, deps, "src/medaug/tasks/pubmedqa.yaml")
    assert not declared.covered("variants", keys, deps, "src/medaug/tasks/pubmedqa.yaml")


def test_dvc_exp_run_set_param_changes_one_line_of_the_shipped_params_yaml(tmp_path):
    """Issue 32: `dvc exp run -S train.learning_rate=...` rewrites params.yaml through DVC's ruamel round trip
    (`dvc.utils.hydra.apply_overrides`, what its queue's `_update_params` calls), which writes every list it holds
    in block style; params.yaml is written in that style, so an experiment's diff is the one line it sets."""
    import difflib
    import shutil

    from dvc.utils.hydra import apply_overrides

    from support.paths import ROOT

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    before = (tmp_path / "params.yaml").read_text()
    apply_overrides(str(tmp_path / "params.yaml"), ["train.learning_rate=0.0001", "generate.strategies=[rewrite]"])
    changed = [line for line in difflib.unified_diff(before.splitlines(), (tmp_path / "params.yaml").read_text()
                                                     .splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-  - new", "-  learning_rate: 0.0002", "+  learning_rate: 0.0001"], changed
