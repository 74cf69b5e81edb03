"""`medaug`: every pipeline stage (run through DVC so dvc.lock stays true), plus predict and utilities."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click

from medaug.errors import MedaugError


def _repro(stage: str, force: bool) -> None:
    """Stages run through `dvc repro --single-item`, so their outputs are hashed and dvc.lock is updated."""
    cmd = ["dvc", "repro", "--single-item", stage] + (["--force"] if force else [])
    click.echo("$ " + " ".join(cmd), err=True)
    sys.exit(subprocess.call(cmd))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """medaug: teacher-LLM augmentation of PubMedQA and LoRA fine-tuning of small models (DVC + MLflow)."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


_force = click.option("--force", "-f", is_flag=True, help="Run even if DVC says the stage is up to date.")


@cli.command()
@_force
def prepare(force: bool) -> None:
    """Load PubMedQA (params data.source) and write the official split to data/prepared/."""
    _repro("prepare", force)


@cli.command()
@_force
def generate(force: bool) -> None:
    """Ask the teacher to rewrite train QA pairs and write new ones (data/generated/)."""
    _repro("generate", force)


@cli.command(name="filter")
@_force
def filter_(force: bool) -> None:
    """Validate, dedup and decontaminate the generated data (data/filtered/, metrics/funnel.json)."""
    _repro("filter", force)


@cli.command()
@click.argument("model")
@click.argument("variant")
@_force
def train(model: str, variant: str, force: bool) -> None:
    """LoRA fine-tune MODEL (a key of params `models`) on VARIANT (original | augmented)."""
    _repro(f"train@{model}-{variant}", force)


@cli.command()
@click.argument("model")
@click.argument("variant")
@_force
def evaluate(model: str, variant: str, force: bool) -> None:
    """Score MODEL-VARIANT (or VARIANT zero-shot: the untrained base) on the test split."""
    _repro(f"zero-shot@{model}" if variant == "zero-shot" else f"evaluate@{model}-{variant}", force)


@cli.command()
@_force
def register(force: bool) -> None:
    """Register the best candidate in MLflow and move the `champion` alias if it wins."""
    _repro("register", force)


@cli.command(name="check-params")
@click.argument("path", default="params.yaml", type=click.Path())
def check_params(path: str) -> None:
    """Parse and validate params.yaml (unknown keys and bad values fail with the key path)."""
    from medaug.params import load_params

    load_params(path)
    click.echo(f"{path}: ok")


@cli.command()
@click.option("--model", "model_uri", required=True, help="An MLflow model URI, e.g. models:/medaug-pubmedqa@champion")
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="JSONL with `question` and `contexts` (list) or `context` (str); `id` optional.")
@click.option("--output", "output_path", type=click.Path(dir_okay=False), default=None,
              help="Write JSONL here instead of stdout.")
def predict(model_uri: str, input_path: str, output_path: str | None) -> None:
    """Answer yes/no/maybe for each input line with a registered model."""
    from medaug.data.jsonl import iter_jsonl, write_jsonl
    from medaug.tracking import setup_mlflow

    rows = []
    for lineno, obj in iter_jsonl(input_path):
        if "question" not in obj or not ("contexts" in obj or "context" in obj):
            raise MedaugError(f"{input_path}:{lineno}: needs `question` and `contexts` or `context`")
        rows.append(obj)
    setup_mlflow(Path.cwd())
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(model_uri)
    preds = model.predict(rows)
    out = [{"id": str(r.get("id", i)), "prediction": y} for i, (r, y) in enumerate(zip(rows, preds))]
    if output_path:
        write_jsonl(output_path, out)
    else:
        for o in out:
            click.echo(json.dumps(o))


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="medaug", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except MedaugError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
