"""The whole suite: the environment every test runs in, each test's tier marker from its folder, and the fixtures
more than one tier uses. Tier-only fixtures live in tests/<tier>/conftest.py, helpers in tests/support/."""

import os
from pathlib import Path

import pytest

# Set before any test imports dvc, mlflow or transformers.
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One thread per process, for this process and every stage, CLI and launcher it starts: the tests' models are tiny
# (threads only add sync cost), and under pytest-xdist each worker has a core; a second thread waiting on a busy core
# made a tiny-model training step 10x slower (`make test` runs two workers on two cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Every DVC stage a test runs records the params it reads and fails on one its dvc.yaml entry does not declare
# (medaug.declared, issue 31); each project's stages write what they read to this folder of the project.
os.environ.setdefault("MEDAUG_CHECK_PARAMS", ".dvc/tmp/params-read")
# The CPU kernels' caps of the default `cpu.isa: avx2` (medaug.cpu), for this process and every one it starts: a
# stage forked from a worker's fork server (support.forkserver) gets the torch the server loaded, and that one must
# be capped as the stage's own `cap_kernels` would cap a fresh interpreter; the in-process tests compute as the
# stages do.
for _k, _v in __import__("medaug.cpu", fromlist=["caps"]).caps("avx2").items():
    os.environ.setdefault(_k, _v)

from support.dag import run_root  # noqa: E402

TIERS = ("unit", "integration", "dag")


# The order tests start in: the longest first, so two xdist workers finish together (the DAG modules are minutes
# each, the rest seconds). Module paths relative to tests/; anything not listed follows, integration before unit.
FIRST = ["dag/test_pipeline.py", "dag/test_exam_task.py", "dag/test_progressive_task.py", "dag/test_label_task.py",
         "dag/test_exp_run.py", "dag/test_queue.py", "dag/test_temp_experiment.py", "dag/test_sharing.py",
         "dag/test_teacher_failures.py", "dag/test_rounds.py",
         "integration/test_train.py", "integration/test_register.py", "integration/test_models.py"]


def pytest_collection_modifyitems(config, items):
    """Each test gets its tier's marker (unit, integration, dag) from the folder it lives in, so
    `pytest -m integration` picks a tier wherever its files are named on the command line. Modules start longest
    first (FIRST): under pytest-xdist's `--dist loadscope` (Makefile) each module is one unit of work, handed out in
    this order, and its module-scoped fixtures (a DAG, a server) are built once, on one worker."""
    tests = Path(__file__).resolve().parent

    def rank(item) -> tuple[int, int]:
        module = Path(item.path).resolve().relative_to(tests).as_posix()
        if module in FIRST:
            return 0, FIRST.index(module)
        return 1, {"integration": 0, "unit": 1}.get(module.split("/")[0], 2)

    for item in items:
        try:
            module = Path(item.path).resolve().relative_to(tests)
        except ValueError:
            continue
        if module.parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, module.parts[0]))
    items.sort(key=lambda item: rank(item) if Path(item.path).resolve().is_relative_to(tests) else (2, 0))


@pytest.fixture
def tiny_cache(tmp_path_factory, monkeypatch):
    """Tiny test models built in a cache every xdist worker of the run shares, on one thread (tiny matrices:
    threads only add sync cost)."""
    import torch

    monkeypatch.setenv("MEDAUG_CACHE", str(run_root(tmp_path_factory) / "medaug-cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def generate_project(tmp_path, monkeypatch):
    """A project holding 10 prepared train items (support.generate.make_train) and a teacher key that must never
    be written anywhere: what the generate stage runs on."""
    from medaug.data.schema import write_records
    from support.generate import make_train

    write_records(tmp_path / "data/prepared/train.jsonl", make_train(10))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-medaug-SECRET-do-not-write")
    return tmp_path


@pytest.fixture
def prepared(tmp_path):
    """The bundled PubMedQA sample prepared in tmp_path/prepared: {"train"|"dev"|"test": records, "dir": folder}."""
    from medaug.data import prepare
    from medaug.data.schema import read_records
    from medaug.params import Params
    from support.paths import ROOT

    out = tmp_path / "prepared"
    prepare.run(Params(), ROOT, out, tmp_path / "prepare.json")
    return {name: read_records(out / f"{name}.jsonl") for name in ("train", "dev", "test")} | {"dir": out}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """tiny-llama published as support.hub.HUB_ID at COMMIT in a hub cache (models--org--name/snapshots/<commit>,
    refs/main), offline: transformers resolves the id through the real hub client, from local files."""
    import shutil

    from huggingface_hub import constants

    from medaug.models import resolve
    from support.hub import COMMIT, HUB_ID

    cache = tmp_path / "hub"
    repo = cache / f"models--{HUB_ID.replace('/', '--')}"
    shutil.copytree(resolve("tiny-llama"), repo / "snapshots" / COMMIT, ignore=shutil.ignore_patterns("medaug_*"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))  # for the subprocesses
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture(scope="module")
def register_steps(tmp_path_factory):
    """Five registrations in one store (support.register's data): first (champion), tie, worse, higher within
    noise, higher beyond it. The tests run in its folder with its sqlite store as MLFLOW_TRACKING_URI."""
    import json

    import torch
    from mlflow import MlflowClient

    from medaug.data.jsonl import write_json
    from medaug.data.schema import write_records
    from support.models import lora_adapter
    from support.register import FUNNEL, LOCK, LONG_CARD, TEST, register_step, right_on

    root = tmp_path_factory.mktemp("register")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tiny_cache fixture: tiny matrices
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MEDAUG_CACHE", str(run_root(tmp_path_factory) / "medaug-cache"))
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
               "tie": register_step("higher", {"tiny-original-0": right_on(10), "tiny-augmented-0": worst}),
               "worse": register_step("higher", {"tiny-original-0": right_on(9), "tiny-augmented-0": worst}),
               # 11 vs 10 right: 1 discordant pair, p = 1
               "noise": register_step("mcnemar", {"tiny-original-0": right_on(11), "tiny-augmented-0": worst}),
               # 16 vs 10 right: 6 discordant pairs all for the candidate, p = 2 / 2**6 = 0.03125
               "beyond": register_step("mcnemar", {"tiny-original-0": right_on(11), "tiny-augmented-0": right_on(16)},
                                       LONG_CARD)}
        yield {"root": root, "client": MlflowClient(), **out}
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def register_evaluated(register_steps, tmp_path_factory):
    """What the evaluate stage predicts for the champion's candidate (tiny-augmented-0, v5) on the test split."""
    import json

    from medaug.evaluate import evaluate
    from medaug.paths import Candidate, EvaluateIO
    from support.register import LABELS, N

    root, out = register_steps["root"], tmp_path_factory.mktemp("evaluate")
    evaluate.run(register_steps["beyond"][0], Candidate("tiny", "augmented", 0),
                 EvaluateIO(root / "data/prepared/test.jsonl", out, out / "m.json", out / "c.json", out / "pc.json",
                            root / "models/tiny-augmented-0"))
    want = [json.loads(line)["prediction"] for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(want) == N and set(want) <= set(LABELS) and len(set(want)) > 1  # not a constant answer
    return want
