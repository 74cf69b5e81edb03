"""`medaug`: every pipeline stage (run through DVC so dvc.lock stays true), plus predict and utilities."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import click

from medaug import dvc_cmd
from medaug.errors import LEVEL_ENV, QUIET_ENV, MedaugError, setup_logging

if TYPE_CHECKING:
    from medaug.llm.cache import RequestCache

log = logging.getLogger(__name__)


def _repro(stage: str, force: bool) -> None:
    """Stages run through `dvc repro --single-item`, so their outputs are hashed and dvc.lock is updated."""
    quiet = not logging.getLogger("medaug").isEnabledFor(logging.INFO)  # medaug -q: DVC quiet too
    cmd = ["dvc", "repro", *(["-q"] if quiet else []), "--single-item", stage] + (["--force"] if force else [])
    log.info("$ " + " ".join(cmd))
    sys.exit(subprocess.call(cmd))


def _version() -> str:
    """medaug's installed version and those of the libraries a result depends on, on one line (for bug reports);
    read from the installed distributions' metadata, so nothing heavy is imported."""
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    libs = ", ".join(f"{name} {v(name)}" for name in ("torch", "transformers", "peft", "dvc", "mlflow"))
    return f"medaug {v('medaug')} ({libs}; python {sys.version.split()[0]})"


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_version())
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
              help="Show the version of medaug and of torch, transformers, peft, dvc, mlflow, and exit.")
@click.option("-v", "--verbose", is_flag=True, help="Also show debug messages.")
@click.option("-q", "--quiet", is_flag=True, help="Only medaug's warnings and errors (no status lines, progress bars, "
              "library warnings or DVC output).")
def cli(verbose: bool, quiet: bool) -> None:
    """medaug: teacher-LLM augmentation of a medical QA task (PubMedQA by default) and LoRA fine-tuning of small
    models (DVC + MLflow)."""
    if verbose and quiet:
        raise click.UsageError("-v/--verbose and -q/--quiet exclude each other")
    if verbose or quiet:
        os.environ[LEVEL_ENV] = "DEBUG" if verbose else "WARNING"  # the stages `dvc repro` runs log the same
    if quiet:
        os.environ.update(QUIET_ENV)  # no bars or library warnings, here or in the stages
    setup_logging()  # $MEDAUG_LOG_LEVEL, else INFO
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


_force = click.option("--force", "-f", is_flag=True, help="Run even if DVC says the stage is up to date.")


@cli.command()
@_force
def prepare(force: bool) -> None:
    """Load the task's source (params data.source, task.file) and write its split to data/prepared/."""
    _repro("prepare", force)


@cli.command()
@_force
@click.option("--dry-run", is_flag=True, help="Print the requests, tokens and worst-case cost; send nothing.")
def generate(force: bool, dry_run: bool) -> None:
    """Ask the teacher to rewrite train QA pairs and write new ones (data/generated/)."""
    if not dry_run:
        _repro("generate", force)
    from medaug import augment
    from medaug.params import load_params
    from medaug.paths import PREPARED

    if not (PREPARED / "train.jsonl").exists():
        raise MedaugError(f"{PREPARED / 'train.jsonl'}: not found; run `medaug prepare` (or `dvc repro prepare`) first")
    augment.dry_run(load_params(), Path.cwd(), PREPARED)


@cli.command(name="filter")
@_force
def filter_(force: bool) -> None:
    """Validate, dedup and decontaminate the generated data (data/filtered/, metrics/funnel.json)."""
    _repro("filter", force)


@cli.command()
@click.argument("variant")
@_force
def dataset(variant: str, force: bool) -> None:
    """Build VARIANT's training set (data/train/VARIANT.jsonl) from its recipe, params `variants.VARIANT`."""
    _repro(f"dataset@{variant}", force)


def _stage(kind: str, model: str, variant: str, seed: int) -> str:
    """The DVC stage of a candidate: dapt-<variant> candidates have their own matrices (train-dapt, ...)."""
    from medaug.paths import Candidate

    return Candidate(model, variant, seed).stage(kind)


_seed = click.option("--seed", default=0, show_default=True, help="Which of params train.seeds.")


@cli.command()
@click.argument("model")
@_force
def pretrain(model: str, force: bool) -> None:
    """Continued pretraining of MODEL on params pretrain.corpus (MODEL must be in pretrain.models)."""
    _repro(f"pretrain@{model}", force)


@cli.command()
@click.argument("model")
@click.argument("variant")
@_seed
@_force
def train(model: str, variant: str, seed: int, force: bool) -> None:
    """Fine-tune MODEL (a key of params `models`) on VARIANT (a key of params `variants`, e.g. original,
    augmented; dapt-<variant> starts from MODEL's continued pretraining) with SEED."""
    _repro(_stage("train", model, variant, seed), force)


@cli.command()
@click.argument("model")
@click.argument("variant")
@_seed
@_force
def evaluate(model: str, variant: str, seed: int, force: bool) -> None:
    """Score MODEL-VARIANT-SEED (or VARIANT zero-shot: the untrained base) on the test split."""
    _repro(_stage("evaluate", model, variant, seed), force)


@cli.command()
@_force
def compare(force: bool) -> None:
    """The recipes table: each variant's mean over train.seeds against `original` (reports/variants.json)."""
    _repro("compare", force)


@cli.command(name="evaluate-teacher")
@_force
def evaluate_teacher(force: bool) -> None:
    """The teacher baseline: the teacher answers the test split k-shot (evaluate.teacher_shots, evaluate.teacher)."""
    _repro("evaluate-teacher", force)


@cli.command()
@_force
def register(force: bool) -> None:
    """Register the best candidate in MLflow and move the `champion` alias if it wins."""
    _repro("register", force)


@cli.command()
@click.option("--rev", default="HEAD", show_default=True,
              help="Git revision the Δ columns compare with (`dvc metrics diff REV`).")
@click.option("--output", "output_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the Markdown here (atomically) instead of stdout.")
def report(rev: str, output_path: Path | None) -> None:
    """A Markdown table of every candidate (accuracy and macro-F1 with 95% CIs, p vs zero-shot, Δ vs REV),
    the teacher baseline and the registered model, ready for a pull-request comment."""
    from medaug.data.jsonl import atomic_path
    from medaug.report import render

    text = render(Path.cwd(), rev)
    if output_path is None:
        click.echo(text, nl=False)
        return
    with atomic_path(output_path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    log.info(f"wrote {output_path}")


@cli.command(name="check-params")
@click.argument("path", default="params.yaml", type=click.Path())
def check_params(path: str) -> None:
    """Parse and validate params.yaml (unknown keys and bad values fail with the key path; generation strategies
    that do not exist or cannot serve the task fail naming the fix)."""
    from medaug.augment import strategies
    from medaug.data import loaders
    from medaug.filtering import steps
    from medaug.params import load_params

    log.debug(f"check-params: reading {Path(path).resolve()}")
    p = load_params(path)
    loaders.check(p)
    strategies.check(p)
    steps.check(p)
    click.echo(f"{path}: ok")


@cli.command(name="check-lock")
@click.option("--prune", is_flag=True, help="Remove the entries of stages dvc.yaml no longer declares.")
def check_lock(prune: bool) -> None:
    """Fail when the committed dvc.lock does not match the code and params, or keeps entries of stages dvc.yaml no
    longer declares (runs `dvc status`, nothing else; --prune removes those entries)."""
    from medaug import freshness

    root = Path.cwd()
    if prune:
        gone = freshness.prune(root)
        click.echo(f"dvc.lock: removed {len(gone)} entries ({', '.join(gone)})" if gone else "dvc.lock: no orphans")
    stale = freshness.stale_stages(root)
    orphans = [] if prune else freshness.orphans(root)  # pruned just now: none left
    for stage, why in stale.items():
        click.echo(f"{stage}: {'; '.join(why)}", err=True)
    for stage in orphans:
        click.echo(f"{stage}: not in dvc.yaml", err=True)
    if stale:
        raise MedaugError(f"dvc.lock is stale for {len(stale)} stages: run `dvc repro`, then commit dvc.lock, "
                          "metrics/, reports/ and plots/ with the change (the committed metrics must be what the "
                          "committed code produces)")
    if orphans:
        raise MedaugError(f"dvc.lock keeps {len(orphans)} entries of stages dvc.yaml no longer declares: run "
                          "`medaug check-lock --prune` and commit dvc.lock")
    click.echo("dvc.lock: up to date with the code and params")


def _project(command: str) -> Path:
    """The working directory, which must hold dvc.yaml (`medaug <command>` runs in the project root)."""
    root = Path.cwd()
    if not (root / "dvc.yaml").is_file():
        raise MedaugError(f"{root / 'dvc.yaml'}: not found; run `medaug {command}` in the project root")
    return root


@cli.command()
@click.option("--write", is_flag=True, help="Rewrite the src/ entries of every stage's deps from the import graph.")
def deps(write: bool) -> None:
    """Fail when dvc.yaml's code deps differ from each stage script's import graph, file by file (--write: fix
    them; comments and every other entry stay)."""
    from medaug.deps import check_deps, write_deps

    root = _project("deps")
    if write:
        changed = write_deps(root)
        click.echo(f"dvc.yaml: wrote the code deps of {len(changed)} stages ({', '.join(changed)})" if changed
                   else "dvc.yaml: code deps already match the import graph")
    problems = check_deps(root)
    if not problems:
        if not write:
            click.echo("dvc.yaml: code deps match the import graph")
        return
    for problem in problems:
        click.echo(problem, err=True)
    stages = len({p.split(":", 1)[0] for p in problems})
    raise MedaugError(f"dvc.yaml code deps differ from the import graph for {stages} stages: run `medaug deps "
                      "--write`")


@cli.command()
@click.option("--write", is_flag=True, help="Rewrite dvc.yaml's round stages from params.yaml.")
def rounds(write: bool) -> None:
    """Fail when dvc.yaml's round stages (probe-r<k>, teach-r<k>, train-r<k>, evaluate-r<k> for k up to the
    recipes' `rounds`) differ from what params.yaml and the train/evaluate stages make of them (--write: rewrite
    them; every other stage stays). Needed after changing the number of rounds only: the recipes themselves
    (train.rounds), models, seeds, per_round and pick are params the stages read."""
    from medaug.dag import check_rounds, write_rounds

    root = _project("rounds")
    if write:
        names = write_rounds(root)
        click.echo(f"dvc.yaml: wrote {len(names)} round stages ({', '.join(names)})" if names
                   else "dvc.yaml: no round stages (no recipe in params.yaml has rounds)")
    problems = check_rounds(root)
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise MedaugError(f"dvc.yaml's round stages differ from params.yaml ({len(problems)} stages): run "
                          f"`medaug rounds --write`")
    if not write:
        click.echo("dvc.yaml: round stages match params.yaml")


@cli.command()
@click.option("--model", "model_uri", required=True, help="An MLflow model URI, e.g. models:/medaug-pubmedqa@champion")
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="JSONL (- for stdin) with `question` and `contexts` (list) or `context` (str), and `options` "
                   "({letter: text}) for a multiple-choice model; `id` optional.")
@click.option("--output", "output_path", type=click.Path(dir_okay=False), default=None,
              help="Write JSONL here instead of stdout.")
def predict(model_uri: str, input_path: str, output_path: str | None) -> None:
    """Answer each input line with a registered model, in its task's format (a label, or an option letter)."""
    from medaug.data.jsonl import write_jsonl
    from medaug.errors import one_line
    from medaug.tracking import setup_mlflow
    from medaug.tracking.pyfunc import read_predict_input
    from medaug.tracking.registry import check_model_uri

    rows = read_predict_input(input_path)  # every line checked before a model loads
    setup_mlflow(Path.cwd())
    check_model_uri(model_uri)
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except MlflowException as e:
        raise MedaugError(f"{model_uri}: cannot be loaded ({one_line(e)})") from None
    preds = model.predict(rows)
    out = [{"id": r["id"], "prediction": y} for r, y in zip(rows, preds)]
    if output_path:
        write_jsonl(output_path, out)
    else:
        for o in out:
            click.echo(json.dumps(o))


@cli.command()
@click.argument("candidate")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--merge", is_flag=True, help="Write the merged model even where an adapter on a hub base would do.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True,
              help="Weights of a merged model (half precision halves the size; scores may move slightly).")
def export(candidate: str, out_dir: Path, merge: bool, dtype: str) -> None:
    """Write trained CANDIDATE (a folder under models/, e.g. gemma270m-augmented-0) into OUT_DIR with its model
    card, loadable with transformers/peft and no medaug: a LoRA adapter naming its base by hub id, or (base not on
    the hub, or --merge) the merged model."""
    from medaug.export import export as export_candidate
    from medaug.params import load_params

    export_candidate(load_params(), candidate, out_dir, merge=merge, dtype=dtype)


@cli.command()
@click.option("--rev", default=None, help="Show only the items whose fate or text changed since this git "
              "revision (its outputs read through DVC: the local cache or the remote).")
@click.option("--output", "output_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the page [default: reports/view.html; with --rev, reports/view-<rev>.html].")
def view(rev: str | None, output_path: Path | None) -> None:
    """One HTML page to read what the teacher wrote: every item asked for, kept or dropped with its step and
    reason, the parent question beside the generated one, filter and sort by any column; draws with no network."""
    import re

    from medaug.data.jsonl import atomic_path
    from medaug.params import load_params
    from medaug.view import build

    text, rows, _ = build(Path.cwd(), rev, recipes=load_params().train.variants)
    out = output_path or Path("reports") / ("view.html" if rev is None else
                                            f"view-{re.sub(r'[^A-Za-z0-9._-]+', '_', rev)}.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    log.info(f"wrote {out} ({len(rows)} items{f' changed since {rev}' if rev else ''}); open it in a browser")


@cli.group(name="data")
def data_group() -> None:
    """The task's source data."""


@data_group.command(name="fetch")
@click.option("--revision", default=None,
              help="A commit sha, tag or branch of the hub dataset (default: the task file's hub_revision, else main).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The folder to write (default: data/source/<task name>).")
def data_fetch(revision: str | None, out_dir: Path | None) -> None:
    """Download the task's hub dataset (task file: hub_id, hub_config, hub_revision) at a pinned revision into a
    folder, one <split>.parquet per split, with medaug_source.json naming the commit; point data.source at it."""
    from medaug.data.fetch import fetch
    from medaug.params import load_params

    task = load_params().task
    out = out_dir or Path("data/source") / task.name
    origin = fetch(task, out, revision)
    rows = ", ".join(f"{split} {n}" for split, n in origin["rows"].items())
    log.info(f"wrote {out}: {origin['hub_id']} ({origin['config']}) at {origin['revision']}, {rows} rows")
    pin = "" if origin["requested"] == origin["revision"] else (
        f"; to fetch these bytes again, pin `hub_revision: {origin['revision']}` in {task.file or 'the task file'}")
    log.info(f"next: set `data.source: {out.as_posix()}` in params.yaml and track the folder "
             f"(`dvc add {out.as_posix()}`, or git){pin}")


@cli.group(name="plots")
def plots_group() -> None:
    """The charts of `dvc plots show`, drawn with no network: the page template, static images, screenshots."""


@plots_group.command(name="page")
@click.option("--output", "output_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write it (default: .dvc/plots/page.html, the template .dvc/config names).")
def plots_page(output_path: Path | None) -> None:
    """Write the `dvc plots show` HTML template with the Vega scripts inlined (from vl-convert-python), so the page
    draws with no network. `make setup` runs it; run it again after upgrading vl-convert-python."""
    from medaug import plots

    log.info(f"wrote {plots.write_page(output_path or plots.PAGE)}")


@plots_group.command(name="render")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("dvc_plots/static"),
              show_default=True, help="The folder for the images.")
@click.option("--format", "fmt", type=click.Choice(["png", "svg"]), default="png", show_default=True)
def plots_render(out_dir: Path, fmt: str) -> None:
    """Every chart of `dvc plots show` as an image (vl-convert, no browser), for a report or a model card; prints
    a Markdown image line per chart, e.g. `medaug plots render --out r >> report.md`."""
    from medaug import plots

    for title, path in plots.render_all(Path.cwd(), out_dir, fmt):
        click.echo(f"![{title}]({path.as_posix()})")


@plots_group.command(name="screenshot")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("docs/plots"),
              show_default=True, help="The folder for the screenshots.")
def plots_screenshot(out_dir: Path) -> None:
    """The README's charts (docs/plots/<chart>.png) as headless Chromium draws `dvc plots show`'s page with no
    network: each chart on its own page, with the template `medaug plots page` writes."""
    from medaug import plots

    plots.screenshots(Path.cwd(), out_dir)


@cli.group()
@click.option("--path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The cache file (default: params.yaml teacher.cache).")
@click.pass_context
def cache(ctx: click.Context, path: Path | None) -> None:
    """Inspect, share, trim and correct the teacher request cache (one sqlite file, shared through the DVC
    remote by `cache push` and `cache pull`)."""
    ctx.obj = path  # params.yaml is read only when a subcommand runs, so `--help` works outside a project


def _pass_cache_path(f):
    """Like click.pass_obj, but passes the cache's path: `medaug cache --path`, else params.yaml teacher.cache,
    read here, when the subcommand runs, not while parsing (so `--help` works anywhere)."""
    def new_func(*args, **kwargs):
        ctx = click.get_current_context()
        path = ctx.obj
        if path is None:
            from medaug.params import load_params

            path = Path(load_params().teacher.cache)
        return ctx.invoke(f, path, *args, **kwargs)

    return functools.update_wrapper(new_func, f)


def _open_cache(path: Path, create: bool = False) -> RequestCache:
    """Open the cache; only import may create one, so a wrong --path or params entry fails instead of
    leaving an empty file behind."""
    from medaug.llm.cache import RequestCache

    log.debug(f"cache: {path.resolve()}")
    if not create and not path.is_file():
        raise MedaugError(f"{path}: no request cache here (set params teacher.cache or pass `medaug cache --path`)")
    try:
        return RequestCache(path)
    except sqlite3.DatabaseError as e:
        raise MedaugError(f"{path}: not a usable sqlite request cache ({e})") from None


def _when(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@cache.command(name="stats")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@_pass_cache_path
def cache_stats(path: Path, as_json: bool) -> None:
    """Entries, size, tokens and dates, per backend/model. Checkpoints the WAL first, so afterwards the .sqlite
    file alone is complete (ready for `dvc add`)."""
    with contextlib.closing(_open_cache(path)) as rc:
        complete = rc.checkpoint()
        s = rc.stats()
        batches = rc.batches()
    if not complete:
        log.warning(f"warning: {path} is being read by another process; the .sqlite file may lack the newest "
                    "entries until it finishes")
    models = [asdict(m) for m in s.models]
    if as_json:
        click.echo(json.dumps({"path": str(path), "size_bytes": path.stat().st_size, "entries": s.entries,
                               "input_tokens": s.input_tokens, "output_tokens": s.output_tokens,
                               "oldest": _when(s.oldest), "newest": _when(s.newest), "models": models,
                               "open_batches": [{**b, "created": _when(b["created"])} for b in batches]}))
        return
    click.echo(f"{path}: {s.entries:,} entries, {path.stat().st_size / 1e6:.1f} MB")
    click.echo(f"tokens: {s.input_tokens:,} input, {s.output_tokens:,} output")
    click.echo(f"created: {_when(s.oldest) or '-'} .. {_when(s.newest) or '-'}")
    for m in models:
        name = f"{m['backend'] or '?'}/{m['model'] or '?'}"
        click.echo(f"  {name:40} {m['entries']:>9,} entries {m['input_tokens']:>13,} in {m['output_tokens']:>13,} out")
    for b in batches:  # teacher.batch: submitted, not yet collected (the stage was stopped while it waited)
        click.echo(f"open batch {b['id']}: {b['requests']:,} requests to {b['model']} at {b['endpoint']}, submitted "
                   f"{_when(b['created'])}; the stage's next run polls it")


@cache.command(name="export")
@click.option("--output", "output_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write JSONL here (atomically) instead of stdout.")
@click.option("--model", default=None, help="Only this model's entries.")
@_pass_cache_path
def cache_export(path: Path, output_path: Path | None, model: str | None) -> None:
    """Write entries as JSONL ({key, backend, model, created, value} per line), e.g. to hand to `cache import`."""
    from medaug.data.jsonl import write_jsonl

    with contextlib.closing(_open_cache(path)) as rc:
        rows = (e.as_dict() for e in rc.iter_entries(model))
        if output_path is not None:
            n = write_jsonl(output_path, rows)
        else:
            n = 0
            for row in rows:
                click.echo(json.dumps(row, ensure_ascii=False))
                n += 1
    log.info(f"exported {n:,} entries" + (f" to {output_path}" if output_path else ""))


@cache.command(name="import")
@click.argument("source", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@_pass_cache_path
def cache_import(path: Path, source: Path) -> None:
    """Merge SOURCE (a `cache export` JSONL, - for stdin, or another cache .sqlite) into the cache, creating it if
    needed. Keys already cached keep their answer; all or nothing: the first bad entry stops it, naming its line."""
    from medaug.data.jsonl import STDIN
    from medaug.llm.cache import read_entries

    # every entry checked before the cache is opened (or created); stdin can be read only once, so it is kept
    piped = list(read_entries(source)) if str(source) == STDIN else None
    if piped is None:
        for _ in read_entries(source):
            pass
    with contextlib.closing(_open_cache(path, create=True)) as rc:
        added, seen = rc.merge(read_entries(source) if piped is None else iter(piped))
        rc.checkpoint()
    click.echo(f"added {added:,} of {seen:,} entries from {'stdin' if piped is not None else source} "
               f"({seen - added:,} already cached)")


@cache.command(name="delete")
@click.argument("keys", nargs=-1, required=True)
@_pass_cache_path
def cache_delete(path: Path, keys: tuple[str, ...]) -> None:
    """Delete the entries of these request KEYS (the `request_sha` of a reply, e.g. in a rejects file), so the
    next run asks the teacher again. Keys not in the cache are named; exit status 1 if none was."""
    keys = tuple(dict.fromkeys(keys))
    with contextlib.closing(_open_cache(path)) as rc:
        missing = [k for k in keys if rc.get(k) is None]
        deleted = rc.delete(keys)
        rc.checkpoint()
    click.echo(f"deleted {deleted:,} entries from {path}")
    if missing:
        log.warning(f"not in the cache ({len(missing)}): {' '.join(missing)}")
    if not deleted:
        sys.exit(1)


@cache.command(name="prune")
@click.option("--older-than", "days", type=click.FloatRange(min=0), default=None, metavar="DAYS",
              help="Entries created more than DAYS days ago.")
@click.option("--model", default=None, help="Entries of this model.")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@_pass_cache_path
def cache_prune(path: Path, days: float | None, model: str | None, dry_run: bool) -> None:
    """Delete the entries matching every filter given (at least one), then VACUUM so the file shrinks."""
    if days is None and model is None:
        raise click.UsageError("cache prune needs --older-than DAYS and/or --model M")
    with contextlib.closing(_open_cache(path)) as rc:
        n = rc.prune(None if days is None else days * 86400, model, dry_run=dry_run)
        left = len(rc) - (n if dry_run else 0)
    click.echo(f"{'would remove' if dry_run else 'removed'} {n:,} entries ({left:,} left)")


def _sidecars(path: Path) -> list[Path]:
    """The file and the -wal/-shm files sqlite keeps beside it, in that order."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def _checkpointed(path: Path, action: str) -> None:
    """Checkpoint the WAL so the .sqlite file alone is complete; refuse (MedaugError) while another process
    holds the cache open and keeps part of it in the WAL, e.g. a teacher run in progress."""
    with contextlib.closing(_open_cache(path)) as rc:
        complete = rc.checkpoint()
    if not complete:
        raise MedaugError(f"{path} is in use by another process (a teacher run?), so its newest entries are not in "
                          f"the .sqlite file yet; {action} once it has finished")


def _unshare_from_dvc_cache(path: Path) -> None:
    """With a link cache type (symlink/hardlink) the file is DVC's cached copy itself, and writing to it would
    corrupt the cache: `dvc unprotect` makes it a plain copy again. The default (copy/reflink) needs nothing."""
    if path.is_symlink() or path.stat().st_nlink > 1:
        dvc_cmd.run("unprotect", str(path), what=f"dvc unprotect {path}")


@cache.command(name="push")
@_pass_cache_path
def cache_push(path: Path) -> None:
    """Share the cache through the project's default DVC remote: checkpoint the WAL, `dvc add` the file and
    `dvc push` it; then commit the .dvc file so teammates can `medaug cache pull`."""
    dvcfile = path.with_name(path.name + ".dvc")
    _checkpointed(path, "push")
    fix = "add one with `dvc remote add -d NAME URL` (and commit .dvc/config)"
    try:
        remote = dvc_cmd.run("remote", "default", what="dvc remote default").strip()
    except MedaugError as e:
        raise MedaugError(f"no default DVC remote to push {path} to ({e}); {fix}") from None
    if not remote:
        raise MedaugError(f"no default DVC remote to push {path} to; {fix}")
    dvc_cmd.run("add", str(path), what=f"dvc add {path}")
    _unshare_from_dvc_cache(path)
    dvc_cmd.run("push", str(dvcfile), what=f"dvc push {dvcfile}")
    with contextlib.closing(_open_cache(path)) as rc:
        n = len(rc)
    log.info(f"pushed {path} ({n:,} entries) to DVC remote '{remote}'; now share it: "
             f"git add {dvcfile} && git commit -m 'teacher cache' && git push")


@cache.command(name="pull")
@_pass_cache_path
def cache_pull(path: Path) -> None:
    """Fetch the shared cache (the one its committed .dvc file names) from the DVC remote and merge the local
    entries back in: entries only the local file has are kept, shared answers win on a clash. If the pull
    fails, the local file is left exactly as it was."""
    from medaug.llm.cache import RequestCache, read_entries

    dvcfile = path.with_name(path.name + ".dvc")
    if not dvcfile.is_file():
        raise MedaugError(f"{dvcfile}: not found; nobody has pushed a shared cache yet (`medaug cache push`), or "
                          "`git pull` first")
    aside = None
    if path.exists():
        for _ in read_entries(path):  # every local entry checked before anything moves
            pass
        _checkpointed(path, "pull")
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.local-")
        os.close(fd)
        aside = Path(name)
        for src, dst in zip(_sidecars(path), _sidecars(aside)):
            if src.exists():
                os.replace(src, dst)
            elif dst.exists():
                dst.unlink()
    try:
        dvc_cmd.run("pull", str(dvcfile), what=f"dvc pull {dvcfile}")
    except BaseException:
        if aside is not None:
            for f in _sidecars(path):  # whatever a failed pull left, then the local file back as it was
                f.unlink(missing_ok=True)
            for src, dst in zip(_sidecars(aside), _sidecars(path)):
                if src.exists():
                    os.replace(src, dst)
        raise
    _unshare_from_dvc_cache(path)
    with contextlib.closing(RequestCache(path)) as rc:
        shared = len(rc)
        added = seen = clashes = 0
        if aside is not None:
            try:
                # a clash: a key in both files with another answer; merge keeps the shared one
                clashes = sum(rc.get(e.key) not in (None, e.value) for e in read_entries(aside))
                added, seen = rc.merge(read_entries(aside))
            except BaseException:
                log.error(f"your local entries are kept in {aside}; merge them with `medaug cache import {aside}`")
                raise
        rc.checkpoint()
    if aside is not None:
        for f in _sidecars(aside):
            f.unlink(missing_ok=True)
    log.info(f"pulled {shared:,} shared entries into {path}; local entries added: {added:,}, clashes (the shared "
             f"answer kept): {clashes:,}, already shared as they are: {seen - added - clashes:,}")
    if added:
        log.info("to share your added entries too: medaug cache push")


def main(argv: list[str] | None = None) -> None:
    """The `medaug` executable: exit status 0 on success, 1 for an error in the data, params or state (one
    `error: ...` line), 2 for a usage error (click's message and usage line), 130 on Ctrl-C."""
    try:
        cli.main(args=argv, prog_name="medaug", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except MedaugError as e:  # bad data, params or state: 1; click's usage errors above exit 2
        click.echo(f"error: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
