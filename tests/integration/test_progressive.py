"""Progressive questions (issue 15, part 4; MQG/ECN-QA): the generate stage writes a chain of questions per case,
a record per step, also on corpus passages (skipping those that leak), against ExamTeacher on the HTTP test server.
The chains' checks, filter, recipes and scoring in process: tests/unit/test_progressive.py."""

import json

from medaug.augment import generate
from medaug.data import prepare
from medaug.data.schema import read_records
from medaug.paths import GenerateIO
from support.openai_server import ExamTeacher, OpenAIServer
from support.paths import ROOT
from support.progressive import params


def run_generate(p, tmp_path, monkeypatch) -> dict:
    """The generate stage on the prepared split in tmp_path, ExamTeacher on the HTTP test server as the teacher."""
    p.teacher.backend, p.teacher.model = "openai", "fake"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with OpenAIServer(ExamTeacher()) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        return generate.run(p, tmp_path, GenerateIO(tmp_path / "prepared", tmp_path / "gen.jsonl",
                                                    tmp_path / "rej.jsonl", tmp_path / "gen.json"))


def test_the_generate_stage_writes_a_record_per_step(tmp_path, monkeypatch):
    p = params(per_strategy=4)
    prepare.run(p, ROOT, tmp_path / "prepared", tmp_path / "prepare.json")
    m = run_generate(p, tmp_path, monkeypatch)
    records = read_records(tmp_path / "gen.jsonl", list("ABCD"))
    rejects = [json.loads(x) for x in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert m["requested"] == 4 == len({r.chain["id"] for r in records}) + len(rejects)
    assert m["generated"] == len(records) == 3 * (4 - len(rejects)) == m["by_strategy"]["progressive"]["generated"]
    train = {r.id: r for r in read_records(tmp_path / "prepared/train.jsonl")}
    for r in records:
        assert r.id == f"{r.chain['id']}-{r.chain['step']}" and r.parent_id in train and r.source == "progressive"
        assert train[r.parent_id].chain["step"] == 3  # the case is a train chain's last step: the whole case
        assert len(r.contexts) == r.chain["step"] and len(r.history) == r.chain["step"] - 1


def test_chains_on_corpus_passages_point_at_them_and_skip_passages_that_leak(tmp_path, monkeypatch):
    p = params(per_strategy=0, progressive={"steps": 2, "cases": "corpus"}, grounded={"corpus": "corpus"})
    prepare.run(p, ROOT, tmp_path / "prepared", tmp_path / "prepare.json")
    test = read_records(tmp_path / "prepared/test.jsonl")
    (tmp_path / "corpus").mkdir()
    for name, text in (("a.md", "The glowing orb of Pexis rolls east at dawn and rests at dusk. It hums."),
                       ("b.md", "A vexil sheds its scales in the cold season. They grow back within a cycle."),
                       ("c.md", f"{test[0].question} Nobody knows.")):  # a test question: never asked about
        (tmp_path / "corpus" / name).write_text(text + "\n")
    m = run_generate(p, tmp_path, monkeypatch)
    records = read_records(tmp_path / "gen.jsonl", list("ABCD"))
    assert m["requested"] == 2 and m["progressive_dropped_test_overlap"] == 1  # the passage holding a test question
    assert records and all(r.parent_id is None and r.teacher["grounding"]["file"] in ("a.md", "b.md")
                           for r in records)
    for r in records:  # the teacher (ExamTeacher) reveals the passage's sentences step by step
        assert r.chain["steps"] == 2 and " ".join(r.contexts) in (tmp_path / "corpus" / r.teacher["grounding"]["file"]
                                                                   ).read_text()
