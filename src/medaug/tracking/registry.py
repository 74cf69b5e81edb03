"""The register stage's side effect, made visible to DVC: the `registry` stage (always run, a few seconds).

DVC hashes files; the model version `register` writes lives in a store DVC cannot see (mlflow.db, an MLflow
server). So `dvc repro` first runs `registry`, which

- writes reports/registry.json: which registry the project registers into (its URI without credentials, the
  model name). `register` depends on it: another MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI reruns `register`, into
  that registry;
- checks that the registry still holds the version reports/register.json names (the same candidate on the same
  test data). When it does not (mlflow.db deleted, the version deleted, a registry that never had it), it says so
  and removes reports/register.json, `register`'s output: DVC then runs `register` again instead of reporting it
  up to date. (`register` declares that output `persist`, which keeps DVC's run cache from restoring the stale
  file instead.)

Both files read the same before and after a healthy run, so dvc.lock does not change when nothing did.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from medaug.data.jsonl import read_json, write_json
from medaug.errors import MedaugError
from medaug.params import Params
from medaug.paths import project_root
from medaug.tracking import store_uris


def display_uri(uri: str, root: Path) -> str:
    """`uri` fit for a file in git: no user, password or query (tokens live there); the project's own sqlite
    store relative to the project (`sqlite:///mlflow.db`), so every clone writes the same."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
        try:
            return f"sqlite:///{path.resolve().relative_to(project_root(root)).as_posix()}"
        except ValueError:
            return f"sqlite:///{path}"
    parts = urlsplit(uri)
    if not parts.scheme or not parts.netloc:
        return uri.split("?", 1)[0]
    host = parts.hostname or ""
    return urlunsplit((parts.scheme, host + (f":{parts.port}" if parts.port else ""), parts.path.rstrip("/"), "", ""))


_USERINFO = re.compile(r"(\w[\w+.-]*://)[^/@\s]*@")


def redact(text: str) -> str:
    """`text` without the user and password of any URL in it (a client error quotes the URI it called)."""
    return _USERINFO.sub(r"\1", text)


def _local_store_missing(uri: str) -> bool:
    """A sqlite store whose file is gone: answered without letting MLflow create an empty one."""
    return uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///").split("?", 1)[0]).exists()


def holds(registry_uri: str, tracking_uri: str, report: dict[str, Any]) -> str | None:
    """None when the registry holds the version `report` (reports/register.json) names, with its candidate and
    test data; else why not."""
    name, version = report["model_name"], str(report["version"])
    if _local_store_missing(registry_uri):
        return f"{registry_uri.removeprefix('sqlite:///')} does not exist"
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # a server that is down: say so in seconds
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    try:
        mv = client.get_model_version(name, version)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":  # no such version, or no such model
            return f"it has no version {version} of {name}"
        raise
    tags = mv.tags or {}
    if (tags.get("candidate"), tags.get("test_digest")) != (report.get("candidate"), report.get("test_digest")):
        return (f"its {name} v{version} is another model ({tags.get('candidate')} on test data "
                f"{str(tags.get('test_digest'))[:12]}), not {report.get('candidate')}")
    return None


def check(p: Params, root: Path, identity_path: Path, report_path: Path) -> str:
    """Write identity_path (reports/registry.json); remove report_path (reports/register.json) when the registry
    no longer holds the version it names. Returns the line the stage prints."""
    tracking_uri, registry_uri = store_uris(root)
    shown = display_uri(registry_uri, root)
    write_json(identity_path, {"registry": shown, "model_name": p.register.model_name})
    if not Path(report_path).exists():
        return f"registry {shown}: nothing registered yet"
    report = read_json(report_path)
    if not isinstance(report, dict) or report.get("model_name") != p.register.model_name or "version" not in report:
        return f"registry {shown}: {report_path} names another model; register runs for the params' model"
    try:
        why = holds(registry_uri, tracking_uri, report)
    except Exception as e:  # noqa: BLE001 - any client error: the registry cannot be asked
        raise MedaugError(f"registry {shown}: cannot check that it holds {report['model_name']} "
                          f"v{report['version']} ({type(e).__name__}: {redact(str(e).splitlines()[0])[:200]}); "
                          f"start the server or set MLFLOW_TRACKING_URI to the registry, then rerun `dvc repro`") from e
    if why is None:
        return f"registry {shown}: holds {report['model_name']} v{report['version']} ({report.get('candidate')})"
    Path(report_path).unlink()
    return (f"registry {shown}: {why}, so {report_path} (v{report['version']}) no longer describes it; "
            f"`register` runs again")


def check_model_uri(uri: str) -> None:
    """A `models:/<name>@<alias>` or `models:/<name>/<version>` URI the registry (as setup_mlflow set it) does not
    hold fails in one line naming what it holds (MLflow would end `medaug predict` in a 50-line traceback). Other
    URIs (runs:/, a folder) are left to MLflow."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    m = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/([^/]+))", uri)
    if not m:
        return
    name, alias, version = m.groups()
    client = MlflowClient()
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        names = sorted(r.name for r in client.search_registered_models())
        raise MedaugError(f"{uri}: no registered model {name!r} in {redact(mlflow.get_registry_uri())} (registered: "
                          f"{', '.join(names) or 'none yet: run `dvc repro`'})") from None
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    held = (f"aliases: {', '.join(f'@{a} (v{v})' for a, v in sorted(model.aliases.items())) or 'none'}; "
            f"versions: {', '.join(map(str, versions)) or 'none'}")
    if alias is not None and alias not in model.aliases:
        raise MedaugError(f"{uri}: {name} has no alias {alias!r} ({held})")
    if version is not None and not (version == "latest" and versions or version.isdigit() and int(version)
                                    in versions):
        raise MedaugError(f"{uri}: {name} has no version {version!r} ({held})")
