"""The docs show what the shipped baseline gives (issue 32): every score of a committed candidate that the README
or a docs page prints is the one in metrics/, and the README stays a first page (under 150 lines)."""

import ast
import json
import re

import pytest

from medaug import headline
from medaug.headline import line
from support.paths import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NUMBER = re.compile(r"\d+\.\d{3}")


def committed_scores() -> dict[str, dict]:
    """Each committed candidate's and the teacher baseline's report (what the stage's last line is made of), its
    scores checked against its headline in metrics/."""
    out = {p.stem: json.loads((ROOT / "reports" / "eval" / p.name).read_text())
           for p in (ROOT / "metrics" / "eval").glob("*.json")}
    teacher = json.loads((ROOT / "reports" / "teacher.json").read_text())
    out[teacher["variant"]] = teacher
    for name, report in out.items():
        path = ROOT / "metrics" / ("teacher.json" if report is teacher else f"eval/{name}.json")
        assert headline.scores(report) == json.loads(path.read_text()), f"{path}: not the headline of its report"
    return out


def shown(report: dict) -> list[str]:
    """The numbers a table row gives, in order: accuracy [its CI], macro-F1 [its CI], each to 3 decimals."""
    return NUMBER.findall(line(report))


def table_rows(scores: dict[str, dict]):
    for page in PAGES:
        for no, text in enumerate(page.read_text().splitlines(), 1):
            cells = [c.strip() for c in text.strip().strip("|").split("|")] if text.startswith("|") else []
            name = cells[0].split()[0] if cells and cells[0] else ""
            if name in scores:
                yield page, no, name, cells[1:]


def test_every_table_row_of_a_committed_candidate_shows_its_committed_scores():
    scores = committed_scores()
    rows = list(table_rows(scores))
    assert {name for _, _, name, _ in rows} == set(scores), "the README's table lists every committed candidate"
    for page, no, name, cells in rows:
        numbers = NUMBER.findall(" ".join(cells))
        expected = shown(scores[name])
        # a row gives accuracy (with or without its CI), then macro-F1
        acc_with_ci, f1 = expected[:3], expected[3]
        assert numbers in (acc_with_ci + [f1], acc_with_ci[:1] + [f1]), \
            f"{page.relative_to(ROOT)}:{no}: {name} shows {numbers}; metrics/ says {acc_with_ci} and {f1}"


def test_every_stage_line_quoted_in_the_docs_is_what_the_stage_prints():
    scores = committed_scores()
    quoted = [(page, m) for page in PAGES
              for m in re.finditer(r"evaluate@(\S+?): wrote [^`]*?\.json: ([^`]*?), \.\.\.`", page.read_text())]
    assert quoted
    for page, m in quoted:
        assert line(scores[m.group(1)]).startswith(m.group(2).replace("\n", " ")), (page.name, m.group(0))


def test_the_readme_is_a_first_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 150
    for target in re.findall(r"\]\((docs/[^)#]+)", "\n".join(lines)):
        assert (ROOT / target).exists(), target


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_page_links_outside_the_site(page):
    """Links from docs/ pages resolve inside docs/ (mkdocs checks those); a link to a repo file would be a dead
    link on the site: name such files as code instead."""
    if page.name == "README.md":
        return
    for target in re.findall(r"\]\(([^)#]+)", page.read_text()):
        if not target.startswith(("http://", "https://")):
            assert (page.parent / target).resolve().is_relative_to(ROOT / "docs"), (page.name, target)


def champion_examples() -> dict[str, str]:
    """The committed champion's answers to the task's examples (reports/register.json names the candidate)."""
    register = json.loads((ROOT / "reports" / "register.json").read_text())
    report = json.loads((ROOT / "reports" / "eval" / f"{register['candidate']}.json").read_text())
    return {json.dumps(e["input"], sort_keys=True): e["prediction"] for e in report["examples"]}


def test_the_served_models_answers_shown_are_the_committed_champions():
    """docs/shipping.md asks the champion the task's example over REST and in Python: the rows it sends are
    examples every candidate's evaluate report answers (as the served model scores them), and the answers shown
    are the champion's."""
    answers = champion_examples()
    text = (ROOT / "docs" / "shipping.md").read_text()
    rest = re.findall(r"-d '(\{\"inputs\".*?)'\n# -> (\{.*?\})\n", text, re.S)
    python = re.findall(r"model\.predict\((\[\{.*?\}\])\)\n# -> (\[.*?\])\n", text, re.S)
    assert rest and python
    for payload, shown_out in rest:
        rows = json.loads(payload)["inputs"]
        assert json.loads(shown_out) == {"predictions": [answers[json.dumps(r, sort_keys=True)] for r in rows]}
    for payload, shown_out in python:
        rows = json.loads(payload)
        assert ast.literal_eval(shown_out) == [answers[json.dumps(r, sort_keys=True)] for r in rows]
