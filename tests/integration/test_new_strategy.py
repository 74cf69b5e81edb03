"""Adding a generation strategy is one module, its line where strategies are listed, and params (issue 30): in a
copy of the project, a minimal `paraphrase` strategy goes through the prepare, generate, filter and dataset stage
scripts (fresh processes, the copy's own code) against the HTTP test teacher, and its items reach the training set
of a recipe that selects them."""

import json
import os
import sys

import yaml

from support.openai_server import OpenAIServer, pubmedqa_responder
from support.process import sh
from support.project import copy_project

PARAPHRASE = '''"""`paraphrase`: the rewrite prompt under another name (a test's strategy)."""

from medaug.augment.strategies.rewrite import Rewrite


class Paraphrase(Rewrite):
    name = "paraphrase"
    prompt = "rewrite"


STRATEGY = Paraphrase()
'''


def test_a_strategy_added_as_one_module_and_one_line_runs_through_generate_filter_and_dataset(tmp_path):
    repo = copy_project(tmp_path / "repo")
    package = repo / "src/medaug/augment/strategies"
    (package / "paraphrase.py").write_text(PARAPHRASE)
    listing = (package / "__init__.py").read_text()
    listed = "from medaug.augment.strategies import grounded, mesh, new, progressive, rewrite\n"
    assert listed in listing  # the one line that lists them
    (package / "__init__.py").write_text(listing.replace(listed, listed.replace("rewrite\n", "rewrite\nfrom "
                                         "medaug.augment.strategies import paraphrase\n")).replace(
        "(rewrite, new, grounded, mesh, progressive)", "(rewrite, new, grounded, mesh, progressive, paraphrase)"))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["teacher"].update(backend="openai", model="fake-teacher", max_concurrency=4, timeout_s=10)
    params["generate"].update(strategies=["paraphrase"], per_strategy=6)
    params["variants"]["para"] = {"strategies": ["paraphrase"]}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=str(repo / "src"), OPENAI_API_KEY="sk-test")  # the copy's code, not ours
    with OpenAIServer(pubmedqa_responder) as srv:
        env["OPENAI_BASE_URL"] = srv.base_url
        for script in (["prepare.py"], ["generate.py"], ["filter.py"], ["dataset.py", "para"]):
            sh([sys.executable, f"stages/{script[0]}", *script[1:]], repo, env)
    report = json.loads((repo / "reports/generate.json").read_text())
    assert set(report["by_strategy"]) == {"paraphrase"} and report["by_strategy"]["paraphrase"]["generated"] > 0
    kept = [json.loads(x) for x in (repo / "data/filtered/kept.jsonl").read_text().splitlines()]
    para = [json.loads(x) for x in (repo / "data/train/para.jsonl").read_text().splitlines()]
    train = (repo / "data/prepared/train.jsonl").read_text().splitlines()
    assert kept and {r["source"] for r in kept} == {"paraphrase"} and para[len(train):] == kept
    assert sh([sys.executable, "-m", "medaug.cli", "check-params"], repo, env).stdout.strip() == "params.yaml: ok"
