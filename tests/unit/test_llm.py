"""Teacher layer in process: the sqlite request cache, Retry-After parsing, limits and budget, structured replies,
and the local transformers backend on a tiny model. The OpenAI-compatible backend against a real HTTP server on
127.0.0.1 (concurrency, retries, fault injection), and the cache across processes: tests/integration/test_llm.py."""

import threading
import time

import pytest

from medaug.llm.cache import RequestCache
from medaug.llm.openai_backend import retry_after_s
from medaug.llm.teacher import make_teacher
from medaug.params import TeacherParams


# --- request cache ---------------------------------------------------------------------------------------


def test_cache_put_is_committed_immediately(tmp_path):
    a = RequestCache(tmp_path / "c.sqlite")
    a.put("k", {"text": "é"})
    b = RequestCache(tmp_path / "c.sqlite")  # a second connection sees it while `a` is still open
    assert b.get("k") == {"text": "é"}


def test_cache_is_thread_safe(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")

    def work(t):
        for i in range(50):
            cache.put(f"{t}-{i}", {"i": i})
            assert cache.get(f"{t}-{i}") == {"i": i}

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 200 and cache.hits == 200


def test_retry_after_header_forms():
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert 50 < retry_after_s({"retry-after": time.strftime("%a, %d %b %Y %H:%M:%S GMT",
                                                            time.gmtime(time.time() + 60))}) <= 61
    assert retry_after_s({"retry-after": "soon"}) is None and retry_after_s({}) is None


# --- local backend ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,cut", [
    (" Is it safe?", None),                                                     # still going
    (" Is it safe?\nAnswer: yes\nQuestion: Is it", "Is it safe?\nAnswer: yes"),  # a next item starts
    ("\n Is it safe?\n\nAbstract:", "Is it safe?"),                               # a blank line
    ("Is it safe?\n  \n", "Is it safe?"),
    ("Question: Is it safe?\nAnswer: no\nExplanation: x\nAnswer", None),        # restating the prompt's key is fine
    ("Question: Is it safe?\nAnswer: no\nAnswer:", "Question: Is it safe?\nAnswer: no"),
])
def test_cut_reply_ends_a_reply_where_its_item_ends(text, cut):
    from medaug.llm.base_prompt import cut_reply
    assert cut_reply(text, "Question:") == cut


# --- local backend, generation ---------------------------------------------------------------------------------------


def test_local_backend_tiny_llama_is_batched_deterministic_and_cached(tmp_path):
    tp = dict(backend="local", model="tiny-llama", max_new_tokens=12, batch_size=3, temperature=1.0, seed=0)
    prompts = [f"Abstract: cells number {i} were counted.\nQuestion:" for i in range(5)]  # 2 batches
    a = make_teacher(TeacherParams(**tp, cache="a.sqlite"), tmp_path).complete(prompts)
    b = make_teacher(TeacherParams(**tp, cache="b.sqlite"), tmp_path).complete(prompts)  # fresh cache, same seed
    assert [c.text for c in a] == [c.text for c in b]
    assert all(isinstance(c.text, str) and "\n\n" not in c.text and not c.cached for c in a)
    assert all(c.input_tokens > 0 and 0 <= c.output_tokens <= 12 for c in a)
    assert len({c.request_sha for c in a}) == 5
    other = make_teacher(TeacherParams(**{**tp, "seed": 1}, cache="c.sqlite"), tmp_path).complete(prompts)
    assert [c.text for c in other] != [c.text for c in a]  # the seed matters

    teacher = make_teacher(TeacherParams(**tp, cache="a.sqlite"), tmp_path)
    again = teacher.complete(prompts)
    assert all(c.cached for c in again) and [c.text for c in again] == [c.text for c in a]
    assert teacher.model is None, "a fully cached rerun must not load the model"


def test_local_backend_left_pads_batches(tmp_path):
    """Greedy decoding gives the same text for a prompt alone or in a batch with longer prompts."""
    tp = dict(backend="local", model="tiny-llama", max_new_tokens=8, temperature=0.0)
    prompts = ["Question:", "Abstract: a much longer abstract about counted cells and more.\nQuestion:", "Answer: yes"]
    batched = make_teacher(TeacherParams(**tp, batch_size=3, cache="a.sqlite"), tmp_path).complete(prompts)
    alone = make_teacher(TeacherParams(**tp, batch_size=1, cache="b.sqlite"), tmp_path).complete(prompts)
    assert [c.text for c in batched] == [c.text for c in alone]
    assert any(c.text for c in alone)


def test_budget_meter_refuses_what_could_pass_the_budget():
    from medaug.llm.limits import BudgetExceeded, Meter
    m = Meter(budget_usd=1.0)
    m.reserve(0.5)
    m.reserve(0.5)  # 1.0 in all: allowed, not passed
    with pytest.raises(BudgetExceeded):
        m.reserve(0.01)
    assert m.settle(0.5, 0.2) == pytest.approx(0.2) and m.spent == pytest.approx(0.2)
    with pytest.raises(BudgetExceeded):  # once refused, the run is over, even if money is left
        m.reserve(0.01)
    Meter(budget_usd=0.0).reserve(1e9)  # no budget


@pytest.mark.parametrize("text", ["plain English words here", "1234567890" * 20, "日本語のテキスト", "{}[]();" * 30])
def test_the_worst_case_prompt_bound_holds_for_a_real_tokenizer(text, tiny_cache):
    """Bytes + chat-template tokens bound a byte-level BPE tokenizer's count; chars/4 does not."""
    from medaug.llm.limits import estimate_tokens, max_prompt_tokens
    from transformers import AutoTokenizer

    from medaug.models import resolve
    tok = AutoTokenizer.from_pretrained(resolve("tiny-gpt2"))
    n = len(tok(text)["input_ids"])
    assert n <= max_prompt_tokens(text, 1)
    if text.startswith("1234"):
        assert n > estimate_tokens(text)  # why the estimate cannot be the budget's bound


# --- structured replies -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reply,parsed", [
    ('{"question": "Q?"}', {"question": "Q?"}),
    ('```json\n{"question": "Q?"}\n```', {"question": "Q?"}),
    ('Sure! Here it is: {"question": "Q?"} Hope this helps.', {"question": "Q?"}),
    ('{"question": "Q?', "malformed_json"),
    # an object that never closes keeps its complete pairs, the first of each key
    ('{"question": "Q?", "answer": "yes", "answer": "no", "explanation": "cut sh', {"question": "Q?", "answer": "yes"}),
    ('{"question": "Is it \\"safe\\"?": "Yes"\nReply: {"question": "Is', {"question": 'Is it "safe"?'}),
    ("Question: Q?", "not_json"),
    ('["Q?"]', "not_json"),
])
def test_parse_json_finds_the_object_or_says_why_not(reply, parsed):
    from medaug.llm.structured import parse_json
    assert parse_json(reply) == parsed


def test_conform_checks_required_keys_types_and_enums():
    from medaug.llm.structured import conform, string_schema
    schema = string_schema("question", "answer", enums={"answer": ["yes", "no", "maybe"]})
    assert schema["additionalProperties"] is False and schema["required"] == ["question", "answer"]
    assert conform({"question": " Q? ", "answer": "Yes", "extra": 1}, schema) == {"question": "Q?", "answer": "yes"}
    assert conform({"question": "Q?"}, schema) == "missing_answer"
    assert conform({"question": 3, "answer": "no"}, schema) == "bad_type_question"
    assert conform({"question": "Q?", "answer": "yes or no"}, schema) == "bad_value_answer"


def test_local_json_requests_are_prefilled_and_cut_at_the_end_of_the_object():
    from medaug.llm.base_prompt import cut, cut_json, prefill
    from medaug.llm.structured import string_schema
    from medaug.llm.teacher import Request
    assert prefill(Request.user("x", schema=string_schema("question"))) == '{"question": "'
    assert prefill(Request.user("x", schema=string_schema("answer", enums={"answer": ["yes"]}))) == "{"
    assert prefill(Request.user("x")) == ""
    assert cut_json('{"a": "b"} and then more') == '{"a": "b"}'
    assert cut_json('{"a": "b } still in a string') is None
    pre = '{"question": "'
    assert cut('Is it?"}\nReply: {"question"', "Reply:", pre) == '{"question": "Is it?"}'
    assert cut("Is it", "Reply:", pre) is None
    assert cut("Is it\n\nAbstract: next", "Reply:", pre) == '{"question": "Is it'  # left unfinished
    assert cut('Is it?": "yes"\nReply: {"question": "Is', "Reply:", pre) == '{"question": "Is it?": "yes"'

    # a base model cannot follow a repair instruction: a repair conversation is a new sample of the prompt
    from medaug.llm.base_prompt import prompt_text
    repair = Request([{"role": "user", "content": "Abstract: x\nReply: "}, {"role": "assistant", "content": "bad"},
                      {"role": "user", "content": "That reply could not be used"}])
    assert prompt_text(repair) == "Abstract: x\nReply:"


def test_the_request_key_records_the_endpoint_and_chat_keeps_the_older_keys(tmp_path):
    """teacher.endpoint is part of an openai request's key (a base model's completion is another answer than a
    chat reply), except `chat`, whose keys stay those cached before the setting existed; the key never holds the
    batch setting (a batch answers the same request)."""
    from medaug.llm.teacher import Request

    r = Request.user("Is it?", 0, {"type": "object", "properties": {"answer": {"type": "string"}}})
    keys = {}
    for endpoint in ("chat", "auto", "completions"):
        for batch in (False, True):
            t = make_teacher(TeacherParams(backend="openai", model="m", endpoint=endpoint, batch=batch,
                                           cache=str(tmp_path / "c.sqlite")), tmp_path)
            keys[endpoint, batch] = t.request_sha(r)
            parts = t.key_parts(r)
            assert ("endpoint" in parts) == (endpoint != "chat") and "batch" not in parts
    assert len({keys[e, False] for e in ("chat", "auto", "completions")}) == 3
    assert all(keys[e, False] == keys[e, True] for e in ("chat", "auto", "completions"))
