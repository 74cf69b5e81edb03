"""Data cards: who generated the items, with which prompts and sampling settings, what each step removed, and how
labels and MeSH headings are distributed before and after. Markdown. The filter stage writes the card of every
item it kept (data/filtered/datacard.md); the dataset stage writes each recipe's own (reports/dataset/<recipe>.md:
its strategies' and teachers' items only, their funnel down to what the recipe took), which is what a registered
version or an export of that recipe embeds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from medaug.data.mesh import mesh_coverage
from medaug.data.schema import Record
from medaug.params import Params, TeacherParams

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


def teachers(p: Params, generated: list[Record]) -> dict[str, tuple[TeacherParams | None, list[str]]]:
    """{model: (its teacher in params, the strategies it wrote for)} for each teacher that wrote one of `generated`:
    the strategy's teacher of that model (generate.teachers, else `teacher`), None when params no longer name it."""
    sources: dict[str, set[str]] = {}
    for r in generated:
        sources.setdefault(r.teacher_model or "?", set()).add(r.source)
    return {model: (next((t for s in sorted(strategies) for t in p.teachers_for(s) if t.model == model), None),
                    sorted(strategies)) for model, strategies in sorted(sources.items())}


def _teacher_line(model: str, tp: TeacherParams | None, strategies: list[str]) -> str:
    how = (f"`{tp.backend}:{tp.model}`: temperature {tp.temperature}, top_p {tp.top_p}, seed {tp.seed}" if tp else
           f"`{model}` (not among params.yaml's teachers now)")
    return f"- Teacher {how}; for {', '.join(strategies)}"


def recipe_funnel(mine: Callable[[str, str], bool], steps: Sequence[str], generated: list[Record],
                  generate_rejects: list[dict[str, Any]] | None, filter_rejects: list[dict[str, Any]],
                  taken: int) -> dict[str, Any]:
    """The funnel of one recipe's items (`mine(strategy, teacher model)`), in the filter stage's shape: what its
    teachers were asked (`generate`: their unusable replies), what each filter step then dropped of it, and the
    recipe's own selection (`recipe`: what it did not take of what the filter kept, to `taken` items)."""
    gen = [r for r in generated if mine(r.source, r.teacher_model)]
    grj = [x for x in generate_rejects or [] if mine(x["strategy"], str(x.get("teacher", "")))]
    frj = [x for x in filter_rejects if mine(x["source"], (x.get("teacher") or {}).get("model", ""))]
    out: dict[str, dict[str, Any]] = {}
    alive = len(gen) + len(grj)
    first = alive

    def step(name: str, drops: Counter) -> None:
        nonlocal alive
        out[name] = {"in": alive, "out": alive - sum(drops.values()), "dropped": dict(sorted(drops.items()))}
        alive = out[name]["out"]

    if generate_rejects is not None:
        step("generate", Counter(x["reason"] for x in grj))
    for name in [*steps, "chains"]:
        drops = Counter(x["reject_reason"] for x in frj if x["reject_step"] == name)
        if name != "chains" or drops:
            step(name, drops)
    step("recipe", Counter({"not_selected": alive - taken} if alive > taken else {}))
    dropped: Counter = Counter()
    for s in out.values():
        dropped.update(s["dropped"])
    by_source: dict[str, dict[str, int]] = {}
    for source in sorted({r.source for r in gen} | {x["strategy"] for x in grj}):
        asked = sum(r.source == source for r in gen) + sum(x["strategy"] == source for x in grj)
        lost = sum(x["source"] == source for x in frj) + sum(x["strategy"] == source for x in grj)
        by_source[source] = {"in": asked, "kept": asked - lost}
    return {"in": first, "kept": alive, "dropped": dict(sorted(dropped.items())), "steps": out,
            "by_source": by_source}


def render(p: Params, train: list[Record], generated: list[Record], kept: list[Record],
           funnel: dict[str, Any], extra_prompts: dict[str, str] | None = None,
           descriptors: Mapping[str, Sequence[str]] | None = None, recipe: str | None = None) -> str:
    """The card of `kept` (generated items, added to `train`), written from `generated` by the teachers it names
    through the `funnel`; `recipe`: the card of that recipe's training set (its strategies), else of every item the
    filter kept."""
    prompts = sorted({(r.source, (r.teacher or {}).get("prompt_sha", "?")) for r in generated})
    prompts += sorted((extra_prompts or {}).items())
    strategies = p.variants[recipe].strategies if recipe else p.generate.strategies
    lines = [f"# Data card: recipe `{recipe}`" if recipe else "# Data card: augmented training set", ""]
    lines += [_teacher_line(m, tp, ss) for m, (tp, ss) in teachers(p, generated).items()] or ["- Teacher: none"]
    if (funnel.get("teacher") or {}).get("model"):
        lines += [f"- Judge and consistency checks asked `{funnel['teacher']['model']}` (filter.teacher, else teacher)"]
    lines += [f"- Strategies: {', '.join(strategies)}; filter steps: {' -> '.join(p.filter.steps)}",
              f"- Original train split: {len(train)} records; generated and kept: {len(kept)}; "
              f"{'training' if recipe else 'augmented'} set: {len(train) + len(kept)}", "",
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
