"""`medaug view`: one self-contained HTML page to read what the teacher wrote (issue 35).

A row per item the teacher was asked for (as many as the funnel's `in`): kept, or dropped with the step and reason
(the filter's: the step that dropped it; generate's rejects: the teacher's answer was unusable, and the question
cell shows that reply instead), the parent
question beside the generated one, its answer, strategy, teacher, the LLM checks' scores, and what its request cost
on average (reports/generate.json: the strategy's and teacher's cost over its requests). Filter by any column, sort
by any column (click its header); the state lives in the address (`view.html#reason=duplicate_of_train&sort=question`)
so a link shows what its sender saw. Above the table: the funnel per step and per strategy, and the answers' shares
against the train split's, as plain HTML bars. No script or font is fetched: it draws with no network.

The `view` stage (stages/view.py) writes it as reports/view.html on every `dvc repro` that changes the data, and
logs the rows to its MLflow run as a table (`mlflow.log_table`: the run's artifacts show it, searchable).

`--rev REV` compares the workspace with a git revision: the rows are the items whose fate or text changed (added,
removed, kept <-> dropped, another step or reason, another question or answer), with the fate before and after.
The revision's files are read through DVC (`dvc.api.open`: the revision's dvc.lock, from the local DVC cache or
the remote), so no checkout is needed.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medaug.errors import MedaugError
from medaug.paths import TRAIN_SETS, FilterIO

COLUMNS = ("id", "fate", "step", "reason", "strategy", "teacher", "answer", "parent", "question", "scores",
           "usd")
"""The table's columns, in order; `parent` is the parent item's question (train split), `usd` the average cost of
a request of the item's strategy and teacher."""
CHOICE = ("fate", "step", "reason", "strategy", "teacher", "answer")
"""Columns filtered by picking a value; the others by the text they contain."""
CHANGE_COLUMNS = ("id", "change", "before", "after", "strategy", "answer", "question")
REPLY_CHARS = 400
"""How much of an unusable reply (generate's rejects) the question cell shows: the last of its tries."""

Reader = Callable[[Path], "str | None"]
"""A project file's text (a path relative to the project root), None when it does not exist."""


def workspace(root: Path) -> Reader:
    def read(path: Path) -> str | None:
        full = Path(root) / path
        return full.read_text(encoding="utf-8") if full.exists() else None
    return read


def at_revision(root: Path, rev: str) -> Reader:
    """The files of git revision `rev` of the project at `root`, through DVC (outputs from the DVC cache)."""
    import dvc.api
    from dvc.exceptions import DvcException, PathMissingError

    def read(path: Path) -> str | None:
        try:
            with dvc.api.open(str(path), repo=str(root), rev=rev, encoding="utf-8") as f:
                return f.read()
        except (FileNotFoundError, PathMissingError):
            return None
        except DvcException as e:
            raise MedaugError(f"{path} at {rev}: {e} (is its output in the DVC cache? `dvc pull -r <remote>` or "
                              f"`dvc fetch --rev {rev}`)") from e
    return read


def _jsonl(read: Reader, path: Path) -> list[dict[str, Any]]:
    text = read(path)
    if text is None:
        return []
    rows = []
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines: abstracts hold U+2028
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise MedaugError(f"{path}:{n}: not JSON ({e.msg}); rerun the stage that writes it") from e
    return rows


def items(read: Reader) -> list[dict[str, Any]]:
    """The table's rows (COLUMNS) of a project: generate's rejects, then the filter's kept items and rejects."""
    io = FilterIO.at(Path())
    kept, rejects = _jsonl(read, io.kept), _jsonl(read, io.rejects)
    generated = read(io.generated)
    if generated is None:
        raise MedaugError(f"{io.generated}: not found; run `dvc repro filter` (or `dvc pull`) first")
    if read(io.kept) is None:
        raise MedaugError(f"{io.kept}: not found; run `dvc repro filter` (or `dvc pull`) first")
    parents = {str(r["id"]): r.get("question", "") for r in _jsonl(read, io.prepared / "train.jsonl")}
    report = json.loads(read(Path("reports/generate.json")) or "{}")
    requested = {s: c.get("requested", 0) for s, c in report.get("by_strategy", {}).items()}
    usd = {(s, t): cost / requested[s] for s, by in report.get("cost_usd_by_source", {}).items()
           for t, cost in by.items() if requested.get(s)}

    def row(r: dict[str, Any], fate: str, step: str, reason: str) -> dict[str, Any]:
        strategy = r.get("source") or r.get("strategy", "")
        teacher = (r.get("teacher") or {}).get("model", "") if isinstance(r.get("teacher"), dict) \
            else str(r.get("teacher", ""))
        scores = r.get("scores") or {}
        return {"id": str(r["id"]), "fate": fate, "step": step, "reason": reason, "strategy": strategy,
                "teacher": teacher, "answer": str(r.get("final_decision", "")),
                "parent": parents.get(str(r.get("parent_id")), ""), "question": r.get("question", ""),
                "scores": ", ".join(f"{k} {v}" for k, v in sorted(scores.items())),
                "usd": round(usd.get((strategy, teacher), 0.0), 6)}

    def unusable(r: dict[str, Any]) -> dict[str, Any]:  # no question parsed: show what the teacher replied
        replies = [str(x) for x in r.get("replies") or []]
        said = f"(the teacher's reply) {replies[-1][:REPLY_CHARS]}" if replies else \
            f"(no reply: {r.get('teacher_error') or 'none'})"
        return {**row(r, "dropped", "generate", r.get("reason", "")), "question": said}

    return ([row(r, "kept", "", "") for r in kept]
            + [row(r, "dropped", r.get("reject_step", ""), r.get("reject_reason", "")) for r in rejects]
            + [unusable(r) for r in _jsonl(read, io.generate_rejects)])


def fate(row: dict[str, Any]) -> str:
    return "kept" if row["fate"] == "kept" else f"dropped at {row['step']}: {row['reason']}"


def changes(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items whose fate or text differs between two tables (rows of CHANGE_COLUMNS), added and removed ones
    included."""
    old, new = {r["id"]: r for r in before}, {r["id"]: r for r in after}
    out = []
    for i in list(new) + [i for i in old if i not in new]:
        a, b = old.get(i), new.get(i)
        if a is not None and b is not None and fate(a) == fate(b) and \
                (a["question"], a["answer"]) == (b["question"], b["answer"]):
            continue
        what = ("added" if a is None else "removed" if b is None else
                "fate" if fate(a) != fate(b) else "text")
        r = b or a
        out.append({"id": i, "change": what, "before": fate(a) if a else "", "after": fate(b) if b else "",
                    "strategy": r["strategy"], "answer": r["answer"] if b is None or a is None or
                    a["answer"] == b["answer"] else f"{a['answer']} → {b['answer']}", "question": r["question"]})
    return out


def _bars(title: str, rows: list[tuple[str, float, str]], top: float | None = None) -> str:
    """A bar chart as HTML: (label, value, the value's text) per bar, widths relative to `top` (default: the
    largest value)."""
    top = top or max((v for _, v, _ in rows), default=0) or 1
    body = "".join(f'<div class="bar"><span class="label">{html.escape(label)}</span><span class="track">'
                   f'<span class="fill" style="width:{100 * v / top:.1f}%"></span></span>'
                   f'<span class="value">{html.escape(text)}</span></div>' for label, v, text in rows)
    return f'<section class="chart"><h3>{html.escape(title)}</h3>{body or "<p>nothing</p>"}</section>'


def charts(rows: list[dict[str, Any]], read: Reader, funnel: dict[str, Any]) -> str:
    """The page's charts: items per step (asked, then what each step left: the filter's `funnel` report), kept
    and dropped per strategy, and the kept items' answers against the train split's."""
    steps = [("asked", funnel.get("in", len(rows)))] + [(name, s["out"]) for name, s in funnel.get("steps", {}).items()]
    out = [_bars("Items left after each step", [(n, v, str(v)) for n, v in steps])]
    per = Counter((r["strategy"], r["fate"]) for r in rows)
    strategies = sorted({s for s, _ in per})
    out.append(_bars("Kept of asked, per strategy",
                     [(s, per[s, "kept"] / (per[s, "kept"] + per[s, "dropped"]),
                       f"{per[s, 'kept']} of {per[s, 'kept'] + per[s, 'dropped']}") for s in strategies], top=1))
    train = Counter(str(r.get("final_decision")) for r in _jsonl(read, Path("data/prepared/train.jsonl")))
    kept = Counter(r["answer"] for r in rows if r["fate"] == "kept")
    answers = sorted(set(train) | set(kept))
    share = [(f"{a}: {name}", c[a] / (sum(c.values()) or 1), f"{c[a] / (sum(c.values()) or 1):.0%}")
             for a in answers for name, c in (("kept", kept), ("train", train))]
    out.append(_bars("Answers: kept items against the train split", share))
    return "".join(out)


STYLE = """
body { font: 14px system-ui, sans-serif; margin: 16px 24px; color: #222; }
h1 { font-size: 20px; } h3 { font-size: 14px; margin: 4px 0; }
.charts { display: flex; flex-wrap: wrap; gap: 24px; margin-bottom: 16px; }
.chart { min-width: 320px; } .profile td, .profile th { font-size: 12px; } .profile { margin-bottom: 16px; } .bar { display: flex; align-items: center; gap: 6px; margin: 2px 0; }
.label { width: 150px; text-align: right; font-size: 12px; } .value { font-size: 12px; }
.track { width: 200px; height: 12px; background: #eee; display: inline-block; }
.fill { height: 12px; background: #4c78a8; display: block; }
table { border-collapse: collapse; width: 100%; } th, td { border-bottom: 1px solid #ddd; padding: 4px 6px;
vertical-align: top; text-align: left; font-size: 13px; } th { cursor: pointer; background: #f6f6f6;
position: sticky; top: 0; } th.sorted::after { content: " ▾"; } th.sorted.desc::after { content: " ▴"; }
tr.kept td.fate { color: #1a7f37; } tr.dropped td.fate { color: #b42318; }
select, input { font-size: 12px; max-width: 160px; } #count { margin: 8px 0; }
td.parent, td.question, td.before, td.after { min-width: 240px; } td.scores { min-width: 120px; }
td.usd, td.answer { white-space: nowrap; }
"""

SCRIPT = """
const rows = JSON.parse(document.getElementById('rows').textContent);
const cols = JSON.parse(document.getElementById('columns').textContent);
const choice = JSON.parse(document.getElementById('choice').textContent);
const state = {sort: '', desc: false, filters: {}};
function readHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  for (const [k, v] of h) { if (k === 'sort') state.sort = v; else if (k === 'desc') state.desc = v === '1';
    else if (cols.includes(k)) state.filters[k] = v; }
}
function writeHash() {
  const h = new URLSearchParams();
  for (const [k, v] of Object.entries(state.filters)) if (v !== '') h.set(k, v);
  if (state.sort) { h.set('sort', state.sort); if (state.desc) h.set('desc', '1'); }
  history.replaceState(null, '', '#' + h.toString());
}
function cell(v) { return v === undefined || v === null ? '' : String(v); }
function draw() {
  let shown = rows.filter(r => Object.entries(state.filters).every(([k, v]) => v === '' ||
    (choice.includes(k) ? cell(r[k]) === v : cell(r[k]).toLowerCase().includes(v.toLowerCase()))));
  if (state.sort) {
    const k = state.sort, num = rows.every(r => typeof r[k] === 'number');
    shown.sort((a, b) => num ? a[k] - b[k] : cell(a[k]).localeCompare(cell(b[k])));
    if (state.desc) shown.reverse();
  }
  const body = document.querySelector('#items tbody');
  body.replaceChildren(...shown.map(r => {
    const tr = document.createElement('tr');
    tr.dataset.id = r.id; if (r.fate) tr.className = r.fate;
    for (const c of cols) { const td = document.createElement('td'); td.className = c;
      td.textContent = cell(r[c]); tr.appendChild(td); }
    return tr;
  }));
  const count = document.getElementById('count');
  count.dataset.shown = shown.length;
  count.textContent = shown.length + ' of ' + rows.length + ' items';
  document.querySelectorAll('#items th').forEach(th => {
    th.classList.toggle('sorted', th.dataset.col === state.sort);
    th.classList.toggle('desc', th.dataset.col === state.sort && state.desc);
  });
}
function controls() {
  const head = document.querySelector('#items thead');
  const names = document.createElement('tr'), filters = document.createElement('tr');
  for (const c of cols) {
    const th = document.createElement('th'); th.textContent = c; th.dataset.col = c;
    th.onclick = () => { state.desc = state.sort === c ? !state.desc : false; state.sort = c; writeHash(); draw(); };
    names.appendChild(th);
    const td = document.createElement('td'); let input;
    if (choice.includes(c)) {
      input = document.createElement('select');
      for (const v of ['', ...new Set(rows.map(r => cell(r[c])).sort())]) {
        const o = document.createElement('option'); o.value = v; o.textContent = v === '' ? '(all)' : v;
        input.appendChild(o);
      }
    } else { input = document.createElement('input'); input.placeholder = 'contains'; }
    input.value = state.filters[c] || ''; input.name = c;
    input.oninput = () => { state.filters[c] = input.value; writeHash(); draw(); };
    td.appendChild(input); filters.appendChild(td);
  }
  head.replaceChildren(names, filters);
}
readHash(); controls(); draw();
document.body.dataset.rendered = 'ok';
"""


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False).replace("</", "<\\/")  # safe inside <script>


def page(title: str, rows: list[dict[str, Any]], columns: tuple[str, ...], choice: tuple[str, ...],
         charts_html: str = "", note: str = "") -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'">
<style>{STYLE}</style></head>
<body><h1>{html.escape(title)}</h1>{f"<p>{html.escape(note)}</p>" if note else ""}
<div class="charts">{charts_html}</div>
<div id="count"></div>
<table id="items"><thead></thead><tbody></tbody></table>
<script type="application/json" id="rows">{_json(rows)}</script>
<script type="application/json" id="columns">{_json(list(columns))}</script>
<script type="application/json" id="choice">{_json(list(choice))}</script>
<script>{SCRIPT}</script></body></html>
"""


def data_profile(read: Reader, sets: dict[str, Path] | None = None) -> dict[str, Any]:
    """medaug.data.profile of the project's train split and generated items (kept: the filter's), and of the
    training sets `sets` ({name: its file}, e.g. data/train/<recipe>.jsonl)."""
    from medaug.data.profile import profile

    io = FilterIO.at(Path())
    return profile(_jsonl(read, io.prepared / "train.jsonl"), _jsonl(read, io.generated),
                   {str(r["id"]) for r in _jsonl(read, io.kept)},
                   recipes={name: _jsonl(read, path) for name, path in (sets or {}).items()})


def profile_table(prof: dict[str, Any]) -> str:
    """The profile as an HTML table (medaug.data.profile.table): a row per group."""
    from medaug.data.profile import COLUMNS as HEAD, table

    body = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in row) + "</tr>" for row in table(prof))
    return ('<section class="profile"><h3>Profile (novelty: 1 - cosine to the nearest train question; spread: mean '
            'pairwise cosine distance; MiniLM)</h3><table><thead><tr>'
            + "".join(f"<th>{html.escape(h)}</th>" for h in HEAD) + f"</tr></thead><tbody>{body}</tbody></table>"
            "</section>")


def build(root: Path, rev: str | None = None, with_profile: bool = True, recipes: list[str] = ()
          ) -> tuple[str, list[dict[str, Any]], dict[str, Any] | None]:
    """(the page, its rows, the data profile, with the training sets of `recipes`: params train.variants) of the
    project at `root`; with `rev`, the items changed since that git revision (and no profile)."""
    read = workspace(root)
    rows = items(read)
    if rev is None:
        funnel = json.loads(read(FilterIO.at(Path()).funnel) or "{}")
        if funnel and funnel.get("in") != len(rows):
            raise MedaugError(f"{FilterIO.at(Path()).funnel}: in = {funnel.get('in')}, but data/ holds {len(rows)} "
                              f"items (outputs of another run?); run `dvc repro filter` or `dvc checkout`")
        kept = sum(r["fate"] == "kept" for r in rows)
        prof = data_profile(read, {name: TRAIN_SETS / f"{name}.jsonl" for name in recipes}) if with_profile else None
        return page("What the teacher wrote", rows, COLUMNS, CHOICE,
                    charts(rows, read, funnel) + (profile_table(prof) if prof else ""),
                    f"{len(rows)} items asked for, {kept} kept."), rows, prof
    diff = changes(items(at_revision(root, rev)), rows)
    return page(f"What changed since {rev}", diff, CHANGE_COLUMNS, ("change", "before", "after", "strategy"),
                note=f"{len(diff)} items whose fate or text changed between {rev} and the workspace."), diff, None


def log_table(root: Path, rows: list[dict[str, Any]], page_path: Path) -> str:
    """The `view` stage's MLflow run (nested in its pipeline's, medaug.tracking.stage_run): the rows as a table
    (items.json, which the MLflow UI shows as one), the page as an artifact, and the counts; the run id."""
    import mlflow

    from medaug.tracking import stage_run

    run_id = stage_run(root, "view")
    with mlflow.start_run(run_id=run_id):
        mlflow.log_table({c: [r[c] for r in rows] for c in COLUMNS}, artifact_file="items.json")
        mlflow.log_artifact(str(page_path))
        mlflow.log_metrics({"items": len(rows), "kept": sum(r["fate"] == "kept" for r in rows)})
    return run_id
