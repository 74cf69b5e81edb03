"""The data card of the augmented training set: who generated it, with which prompts, what each filter step
removed, and how labels and MeSH headings are distributed before and after. Markdown, written by the filter
stage next to the kept records, so it is versioned with them and can go into a model description."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from medaug.data.mesh import mesh_coverage
from medaug.data.schema import Record
from medaug.params import Params

TOP_MESH = 15


def _labels_row(name: str, records: list[Record], labels: Sequence[str]) -> str:
    c = Counter(r.final_decision for r in records)
    n = len(records) or 1
    return f"| {name} | {len(records)} | " + " | ".join(f"{c[k]} ({c[k] / n:.0%})" for k in labels) + " |"


def _letter_bias(generated: list[Record], letters: Sequence[str]) -> list[str]:
    """Where the teachers put the correct answer, per strategy and teacher (`rewrite` reorders the options
    itself; `new` and `grounded` letters are the teacher's), and a warning for any that favours one letter:
    more than twice its even share, with at least 10 items."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in generated:
        groups.setdefault((r.source, r.teacher_model or "?"), []).append(r)
    rows, warnings = [], []
    for (source, model), rs in groups.items():
        rows.append(_labels_row(f"generated: {source}, `{model}`", rs, letters))
        letter, n = Counter(r.final_decision for r in rs).most_common(1)[0]
        if len(rs) >= 10 and n / len(rs) > 2 / len(letters):
            warnings.append(f"**Letter bias:** `{model}` put the answer at {letter} in {n} of its {len(rs)} "
                            f"{source} items ({n / len(rs):.0%}; even: {1 / len(letters):.0%}).")
    return rows + ([""] + warnings if warnings else [])


def render(p: Params, train: list[Record], generated: list[Record], kept: list[Record],
           funnel: dict[str, Any], extra_prompts: dict[str, str] | None = None,
           descriptors: Mapping[str, Sequence[str]] | None = None) -> str:
    teachers = sorted({r.teacher_model or "?" for r in generated})
    prompts = sorted({(r.source, (r.teacher or {}).get("prompt_sha", "?")) for r in generated})
    prompts += sorted((extra_prompts or {}).items())
    lines = ["# Data card: augmented training set", "",
             f"- Teacher: `{p.teacher.backend}` backend, model(s) {', '.join(f'`{t}`' for t in teachers) or 'none'}; "
             f"temperature {p.teacher.temperature}, top_p {p.teacher.top_p}, seed {p.teacher.seed}",
             f"- Strategies: {', '.join(p.generate.strategies)}; filter steps: {' -> '.join(p.filter.steps)}",
             f"- Original train split: {len(train)} records; generated and kept: {len(kept)}; "
             f"augmented set: {len(train) + len(kept)}", "",
             "## Prompts (sha256)", "", "| prompt | sha256 |", "|---|---|"]
    lines += [f"| {name} | `{sha[:16]}` |" for name, sha in prompts]
    lines += ["", "## Funnel", "", "| step | in | out | dropped |", "|---|---|---|---|"]
    for name, step in funnel["steps"].items():
        dropped = ", ".join(f"{k} {v}" for k, v in step["dropped"].items()) or "-"
        lines.append(f"| {name} | {step['in']} | {step['out']} | {dropped} |")
    lines += ["", "| source | in | kept |", "|---|---|---|"]
    lines += [f"| {src} | {c['in']} | {c['kept']} |" for src, c in funnel["by_source"].items()]
    labels = p.task.choices
    lines += ["", "## Answers" if p.task.answer == "options" else "## Labels", "",
              "| set | n | " + " | ".join(labels) + " |", "|---|---" + "|---" * len(labels) + "|"]
    lines += [_labels_row(name, rs, labels) for name, rs in (
        ("original train", train), ("generated (after generate)", generated), ("generated, kept", kept),
        ("augmented (train + kept)", train + kept))]
    if p.task.answer == "options":
        lines += _letter_bias(generated, labels)
    before, added, after = (mesh_coverage(rs, descriptors) for rs in (train, kept, train + kept))
    lines += ["", f"## MeSH coverage (records per heading; top {TOP_MESH} of the augmented set)", "",
              f"Headings covered: {len(before['headings'])} in the original train split, "
              f"{len(after['headings'])} in the augmented set; kept generated items carry "
              f"{len(added['headings'])} distinct headings.", "",
              "| heading | original | generated, kept | augmented |", "|---|---|---|---|"]
    lines += [f"| {h} | {before['headings'].get(h, 0)} | {added['headings'].get(h, 0)} | {n} |"
              for h, n in list(after["headings"].items())[:TOP_MESH]]
    if after["branches"]:
        lines += ["", "### MeSH tree branches (records per branch)", "",
                  "| branch | original | generated, kept | augmented |", "|---|---|---|---|"]
        lines += [f"| {b} | {before['branches'].get(b, 0)} | {added['branches'].get(b, 0)} | {n} |"
                  for b, n in after["branches"].items()]
    return "\n".join(lines) + "\n"
