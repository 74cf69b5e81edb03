"""The `registry` stage (medaug.tracking.registry): which registry the project registers into, written without
credentials, and whether it still holds the version reports/register.json names; against real sqlite MLflow
stores (the whole `dvc repro` path is in test_pipeline_e2e.py)."""

import json
import socket
from pathlib import Path

import pytest

from medaug.errors import MedaugError
from medaug.params import Params
from medaug.tracking.registry import check, display_uri

NAME = "medaug-pubmedqa"
REPORT = {"model_name": NAME, "version": 1, "alias": "champion", "candidate": "tiny-original", "test_digest": "ab" * 32}


@pytest.fixture
def registry_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    (tmp_path / "reports").mkdir()
    return tmp_path


def register_version(db: Path, tags: dict[str, str]) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{db}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(NAME)
    client.create_model_version(NAME, source=(db.parent / "model").as_uri(), tags=tags)


def run_check(root: Path) -> str:
    return check(Params(), root, root / "reports/registry.json", root / "reports/register.json")


def test_display_uri_drops_credentials_and_keeps_the_project_store_relative(tmp_path):
    assert display_uri("https://alice:s3cret@mlflow.example.org:5000/?token=abc", tmp_path) == \
        "https://mlflow.example.org:5000"
    assert display_uri(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path) == "sqlite:///mlflow.db"
    # the copy DVC runs a temp experiment in registers into the project's store: the same line
    exp = tmp_path / ".dvc/tmp/exps/tmpab12/"
    assert display_uri(f"sqlite:///{tmp_path / 'mlflow.db'}", exp) == "sqlite:///mlflow.db"
    assert display_uri("sqlite:////srv/team/mlflow.db", tmp_path) == "sqlite:////srv/team/mlflow.db"
    assert display_uri("databricks", tmp_path) == "databricks"


def test_nothing_registered_yet_writes_the_registry_and_removes_nothing(registry_project):
    assert run_check(registry_project) == "registry sqlite:///mlflow.db: nothing registered yet"
    assert json.loads((registry_project / "reports/registry.json").read_text()) == \
        {"registry": "sqlite:///mlflow.db", "model_name": NAME}
    assert not (registry_project / "mlflow.db").exists()  # asking created no store


def test_a_registry_holding_the_version_keeps_the_report(registry_project):
    register_version(registry_project / "mlflow.db",
                     {"candidate": "tiny-original", "test_digest": REPORT["test_digest"]})
    (registry_project / "reports/register.json").write_text(json.dumps(REPORT))
    assert run_check(registry_project) == f"registry sqlite:///mlflow.db: holds {NAME} v1 (tiny-original)"
    assert (registry_project / "reports/register.json").exists()


@pytest.mark.parametrize("case, why", [
    ("no store", "mlflow.db does not exist"),
    ("no model", f"it has no version 1 of {NAME}"),
    ("deleted", f"it has no version 1 of {NAME}"),
    ("another model", f"its {NAME} v1 is another model (tiny-augmented on test data abababababab)"),
])
def test_a_registry_without_the_version_withdraws_the_report(registry_project, case, why):
    from mlflow import MlflowClient

    db = registry_project / "mlflow.db"
    if case != "no store":
        candidate = "tiny-augmented" if case == "another model" else "tiny-original"
        register_version(db, {"candidate": candidate, "test_digest": REPORT["test_digest"]})
    if case == "no model":
        MlflowClient(f"sqlite:///{db}", f"sqlite:///{db}").delete_registered_model(NAME)
    if case == "deleted":
        MlflowClient(f"sqlite:///{db}", f"sqlite:///{db}").delete_model_version(NAME, "1")
    (registry_project / "reports/register.json").write_text(json.dumps(REPORT))
    line = run_check(registry_project)
    assert why in line and "(v1) no longer describes it; `register` runs again" in line, line
    assert not (registry_project / "reports/register.json").exists()


def test_an_unreachable_registry_fails_loudly_and_keeps_the_report(registry_project, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://bob:pw@127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    (registry_project / "reports/register.json").write_text(json.dumps(REPORT))
    with pytest.raises(MedaugError) as e:
        run_check(registry_project)
    msg = str(e.value)
    assert msg.startswith(f"registry http://127.0.0.1:{port}: cannot check that it holds {NAME} v1 (")
    assert msg.endswith("start the server or set MLFLOW_TRACKING_URI to the registry, then rerun `dvc repro`")
    assert "pw" not in msg and (registry_project / "reports/register.json").exists()
    assert json.loads((registry_project / "reports/registry.json").read_text())["registry"] == \
        f"http://127.0.0.1:{port}"
