"""What `medaug predict` and the served model accept: the input shape is checked in one place (rows_to_records),
a wrong one is refused naming row, field and what it must be (HTTP 400 from the scoring server), and a multi-MB
context is cut by characters before it is tokenised (tiny models)."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from medaug.data.schema import Record
from medaug.errors import MedaugError
from medaug.evaluate.scorer import Scorer
from medaug.evaluate.task import CHARS_PER_TOKEN, encode
from medaug.models.load import load_model_and_tokenizer
from medaug.models import resolve
from medaug.params import TaskParams
from medaug.tracking.pyfunc import InvalidInput, Question, pip_requirements, read_predict_input, rows_to_records
from medaug.tracking.register import SERVED_MODEL

pytestmark = pytest.mark.usefixtures("tiny_cache")

OK = {"question": "Does early mobilization reduce hospital stay?", "contexts": ["Patients had a shorter stay."]}
SENTENCE = "Patients in the intervention group had a shorter hospital stay and fewer complications. "


@pytest.mark.parametrize("model_input, message", [
    ([{"contexts": ["a"]}], r"^row 0: no `question` \(a non-empty string\)$"),
    ([{"question": None, "contexts": ["a"]}], r"^row 0: no `question`"),
    ([{"question": 5, "contexts": ["a"]}], r"^row 0: `question` must be a non-empty string, got int$"),
    ([{"question": ["Is it?"], "contexts": ["a"]}], r"^row 0: `question` must be a non-empty string, got list$"),
    ([{"question": " ", "contexts": ["a"]}], r"^row 0: `question` must be a non-empty string, got an empty string$"),
    ([{"question": "Is it?", "contexts": 3}], r"^row 0: `contexts` must be a non-empty list of strings, got int$"),
    ([{"question": "Is it?", "contexts": {"a": "b"}}], r"^row 0: `contexts` must be a non-empty list of strings, "
                                                       r"got dict$"),
    ([{"question": "Is it?", "contexts": []}], r"got an empty list$"),
    ([{"question": "Is it?", "contexts": ["a", 1]}], r"^row 0: `contexts\[1\]` must be a string, got int$"),
    ([{"question": "Is it?", "context": 5}], r"^row 0: `context` must be a string, got int$"),
    ([{"question": "Is it?"}], r"^row 0: no `contexts` \(a list of strings\) or `context` \(a string\)$"),
    ([OK, {"id": "p7", "question": 3, "contexts": ["a"]}], r"^row 1 \(id 'p7'\): `question` must be"),
    ([OK, {"id": {"pmid": 1}, **OK}], r"^row 1: `id` must be a string or a number, got dict$"),
    ([OK, ["Is it?", "a"]], r"^row 1: expected one of objects with `question`"),
    ([], r"^model input: no rows"),
    (pd.DataFrame(), r"^model input: no rows"),
    ("Is it?", r"^model input: expected a list of objects .* got str$"),
    ({"question": "Is it?", "contexts": ["a"]}, r"^model input: expected a list of objects .* got dict$"),
    (pd.DataFrame([OK, {"question": None, "context": "b"}]), r"^row 1: no `question`"),
    # as the scoring server hands JSON over: numpy arrays, 0-d for a scalar
    ([{"question": np.array(5), "contexts": np.array({"a": 1}, dtype=object)}], r"^row 0: `question` must be .* "
                                                                                 r"got int$"),
    (np.array("Is it?"), r"got str$"),
])
def test_wrongly_shaped_input_is_refused_naming_row_and_field(model_input, message):
    with pytest.raises(InvalidInput, match=message):
        rows_to_records(model_input)


def test_every_accepted_shape_gives_the_same_records():
    rows = [{"id": "a", **OK}, {"question": "Is it?", "context": "One abstract."}]
    want = [Record(id="a", question=OK["question"], contexts=OK["contexts"], final_decision=""),  # to be answered
            Record(id="1", question="Is it?", contexts=["One abstract."], final_decision="")]
    assert rows_to_records(rows) == want
    assert rows_to_records(pd.DataFrame(rows)) == want  # a column some rows lack: None / NaN there
    served = [{k: np.array(v) for k, v in row.items()} for row in rows]  # `inputs: [...]` through the server
    assert rows_to_records(served) == want
    assert rows_to_records([Question(**row) for row in rows]) == want  # as MLflow hands over typed input


def test_predict_input_file_errors_name_file_line_and_fix(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(json.dumps(OK).encode() + b'\n{"question": "Caf\xe9?", "contexts": ["a"]}\n')
    with pytest.raises(MedaugError, match=r"in\.jsonl:2: not UTF-8 \(byte 0xe9 .*\): re-encode the file as UTF-8"):
        read_predict_input(path)
    path.write_text(json.dumps(OK) + "\n\n{'question': 'Is it?'}\n")
    with pytest.raises(MedaugError, match=r"in\.jsonl:3: malformed JSON \(Expecting property name enclosed in double "
                                          r"quotes at column 2\)"):
        read_predict_input(path)
    path.write_text(json.dumps(OK) + "\n" + json.dumps({"id": 7, "question": 42, "contexts": ["a"]}) + "\n")
    with pytest.raises(InvalidInput, match=r"in\.jsonl:2 \(id '7'\): `question` must be a non-empty string, got int"):
        read_predict_input(path)
    path.write_text("\n \n")
    with pytest.raises(MedaugError, match=r"in\.jsonl: no input rows"):
        read_predict_input(path)
    with pytest.raises(MedaugError, match=r"missing\.jsonl: file not found"):
        read_predict_input(tmp_path / "missing.jsonl")


def test_predict_input_file_rows(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(OK) + "\n\n" + json.dumps({"id": "p9", "question": "Is it?", "context": "Caf\u00e9."})
                    + "\n", encoding="utf-8")
    assert read_predict_input(path) == [{"id": "0", **OK},
                                        {"id": "p9", "question": "Is it?", "contexts": ["Caf\u00e9."]}]


@pytest.mark.parametrize("max_seq_len", [48, 384])
def test_a_multi_mb_context_is_cut_before_tokenising_and_gives_the_same_prompt(max_seq_len):
    """The tail of the abstract that the token-level cut keeps is the same with 2 MB more in front of it, and the
    tokenizer never sees those 2 MB."""
    _, tok = load_model_and_tokenizer("tiny-llama")
    seen = []

    class Recording(type(tok)):
        def __call__(self, text, *args, **kwargs):
            seen.append(len(text))
            return super().__call__(text, *args, **kwargs)

    tok.__class__ = Recording
    task = TaskParams(max_seq_len=max_seq_len)
    bound = max_seq_len * CHARS_PER_TOKEN
    tail = (SENTENCE * (bound // len(SENTENCE)))[:bound - 100] + "Mobilization reduced the stay."
    normal = Record(id="1", question="Does early mobilization reduce hospital stay?", contexts=[tail],
                    final_decision="yes")
    want = encode(tok, normal, task, answer="yes")
    assert want["n_prompt"] <= max_seq_len < len(tok(tail).input_ids)  # the token-level cut did cut it
    huge = dataclasses.replace(normal, contexts=["THE START " * 200_000, tail])
    seen.clear()
    assert encode(tok, huge, task, answer="yes") == want
    assert seen and max(seen) <= bound + len(task.template) + len(normal.question)


def test_served_model_has_a_signature_and_refuses_bad_input_with_a_400_naming_the_row(tmp_path):
    """The real model code (models from code), saved and loaded by mlflow.pyfunc: its signature comes from the type
    hints, it answers as the Scorer does, and wrong input comes back from the scoring server's own request handler
    as a 400 naming the row and the field: wrong types from MLflow's check against the signature, what types
    cannot say (a blank question, no context) from ours."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    task = TaskParams()
    (tmp_path / "task.json").write_text(json.dumps({"task": dataclasses.asdict(task), "batch_size": 4}))
    mlflow.pyfunc.save_model(tmp_path / "pyfunc", python_model=SERVED_MODEL, input_example=[OK],
                             pip_requirements=pip_requirements("tiny-llama"),
                             artifacts={"model": resolve("tiny-llama"), "task": str(tmp_path / "task.json")})
    model = mlflow.pyfunc.load_model(str(tmp_path / "pyfunc"))
    inputs = {c.name: str(c.dtype) for c in model.metadata.signature.inputs.inputs[0].type.properties}
    assert inputs["question"] == "DataType.string" and inputs["contexts"] == "Array(string)" and "history" in inputs
    assert [c.required for c in model.metadata.signature.inputs.inputs[0].type.properties if c.name == "question"] \
        == [True]
    rows = [OK, {"question": "Is it?", "contexts": ["One abstract.", "Another."]}]
    want = [r["prediction"] for r in Scorer(*load_model_and_tokenizer("tiny-llama"), task, 4).predict(
        rows_to_records(rows), progress=False)]
    assert model.predict(rows) == want
    assert model.predict(pd.DataFrame(rows)) == want
    with pytest.raises(MlflowException, match=r"contexts\\n +Input should be a valid list") as e:
        model.predict([OK, {"question": "Is it?", "contexts": {"a": "b"}}])
    assert e.value.get_http_status_code() == 400
    for body, message in [({"inputs": [OK, {"id": "p3", "contexts": ["a"]}]}, r"question\\n +Field required"),
                          ({"inputs": [OK, {"id": "p3", "question": " ", "contexts": ["a"]}]},
                           r"row 1 \(id 'p3'\): `question` must be a non-empty string"),
                          ({"inputs": [OK, {"question": "Is it?"}]}, r"row 1: no `contexts`")]:
        with pytest.raises(MlflowException, match=message) as e:
            scoring_server.invocations(json.dumps(body), "application/json", model, None)
        assert e.value.get_http_status_code() == 400
    ok = scoring_server.invocations(json.dumps({"inputs": rows}), "application/json", model, None)
    assert (ok.status, json.loads(ok.response)["predictions"]) == (200, want)


def test_medaug_predict_refuses_a_bad_input_file_in_one_line(tmp_path, capsys):
    from medaug.cli import main
    path = tmp_path / "in.jsonl"
    for content, message in [(b'{"question": "Caf\xe9?", "contexts": ["a"]}\n', "in.jsonl:1: not UTF-8"),
                             (b"question,contexts\n", "in.jsonl:1: malformed JSON"),
                             (b'{"question": 5, "contexts": ["a"]}\n',
                              "in.jsonl:1: `question` must be a non-empty string, got int")]:
        path.write_bytes(content)
        with pytest.raises(SystemExit) as e:
            main(["predict", "--model", "models:/none@champion", "--input", str(path)])
        err = capsys.readouterr().err
        assert e.value.code == 1 and message in err and err.strip().splitlines()[-1].startswith("error: ")
