"""`medaug view` on a clone of the built pipeline (issue 35), read in headless Chromium with no network: a row per
item the teacher was asked for, a filter by drop reason that shows exactly that reason's rejects, and `--rev` after
a filter threshold changed, which shows exactly the items whose fate changed. The rows and the diff on hand-made
files: tests/unit/test_view.py."""

import json

import yaml

from support.browser import needs_chromium, shown
from support.dag import commit
from support.process import sh

pytestmark = needs_chromium


def jsonl(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def fates(repo) -> dict[str, str]:
    """Each asked-for item's fate as the stages wrote it: kept, or the step and reason that dropped it."""
    out = {r["id"]: f"generate: {r['reason']}" for r in jsonl(repo / "data/generated/rejects.jsonl")}
    out.update({r["id"]: "kept" for r in jsonl(repo / "data/filtered/kept.jsonl")})
    out.update({r["id"]: f"{r['reject_step']}: {r['reject_reason']}" for r in jsonl(repo / "data/filtered/rejects.jsonl")})
    return out


def test_the_page_lists_every_item_asked_for_and_filters_by_reason(project, tmp_path):
    repo, env = project["repo"], project["env"]
    page = tmp_path / "view.html"
    sh(["medaug", "view", "--output", str(page)], repo, env)
    funnel = json.loads((repo / "reports/funnel.json").read_text())
    ids, cells = shown(page)
    assert len(ids) == funnel["in"] == len(set(ids)) and set(ids) == set(fates(repo))
    assert sum(c["fate"] == "kept" for c in cells) == funnel["kept"]
    reasons = {f.split(": ", 1)[1] for f in fates(repo).values() if f != "kept"}
    assert reasons, "the built pipeline drops nothing: nothing to filter by"
    for reason in reasons:
        ids, cells = shown(page, f"reason={reason}")
        assert sorted(ids) == sorted(i for i, f in fates(repo).items() if f.endswith(f": {reason}")), reason
        assert {c["reason"] for c in cells} == {reason}
    # the stage's page (reports/view.html) and profile: per strategy and teacher, generated and kept
    profile = json.loads((repo / "reports/profile.json").read_text())
    assert profile["train"]["n"] == len(jsonl(repo / "data/prepared/train.jsonl"))
    kept_by = {(g["strategy"], g["teacher"]): g["n"] for g in profile["groups"] if g["stage"] == "kept"}
    assert sum(kept_by.values()) == funnel["kept"] == profile["kept"]["n"]
    recipes = {r["recipe"]: r["n"] for r in profile["recipes"]}  # each recipe's generated items (params variants)
    assert recipes and recipes == {name: n for name in ("original", "augmented", "half", "why") if (n := sum(
        r["source"] != "original" for r in jsonl(repo / f"data/train/{name}.jsonl")))}
    headline = json.loads((repo / "metrics/profile.json").read_text())  # the DVC metrics: of all kept items
    assert headline == {k: profile["kept"][k] for k in ("novelty", "distinct_2_vs_train", "fidelity_cosine")
                        if profile["kept"].get(k) is not None} and "novelty" in headline
    assert sorted(shown(repo / "reports/view.html")[0]) == sorted(fates(repo))
    kept = json.loads((repo / "data/filtered/kept.jsonl").read_text().splitlines()[0])
    ids, cells = shown(page, f"question={kept['question'][5:40]}&fate=kept")  # a text filter with a choice
    assert kept["id"] in ids and {c["fate"] for c in cells} == {"kept"}


def test_rev_shows_exactly_the_items_whose_fate_changed(project, tmp_path):
    repo, env = project["repo"], project["env"]
    commit(repo, env, "first run")
    before = fates(repo)
    lengths = sorted(len(r["question"]) for r in jsonl(repo / "data/filtered/kept.jsonl"))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["filter"]["max_question_chars"] = lengths[len(lengths) // 2]  # the longer half of the kept go
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["dvc", "repro", "filter"], repo, env)
    after = fates(repo)
    changed = {i for i in before if before[i] != after.get(i)}
    assert changed and set(after) == set(before)
    page = tmp_path / "changes.html"
    sh(["medaug", "view", "--rev", "HEAD", "--output", str(page)], repo, env)
    ids, cells = shown(page)
    assert sorted(ids) == sorted(changed)
    shown_as = {f: f if f == "kept" else f"dropped at {f}" for f in (*before.values(), *after.values())}
    for i, c in zip(ids, cells):
        assert (c["change"], c["before"], c["after"]) == ("fate", shown_as[before[i]], shown_as[after[i]]), c
    assert any(c["before"] == "kept" and c["after"].startswith("dropped at validate: ") for c in cells), cells
    # the default output names the revision
    sh(["medaug", "view", "--rev", "HEAD"], repo, env)
    assert (repo / "reports/view-HEAD.html").exists()
