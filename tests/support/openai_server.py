"""A real OpenAI-compatible HTTP server for tests: POST /v1/chat/completions, /v1/completions and GET /v1/models on
127.0.0.1.

    with OpenAIServer(pubmedqa_responder) as srv:
        os.environ["OPENAI_BASE_URL"] = srv.base_url    # http://127.0.0.1:PORT/v1

Faults can be injected at a given rate (429 with and without Retry-After, 500, a reply slower than the client's
timeout, a dropped connection, a malformed JSON body); which attempt faults is decided by an RNG seeded with
(seed, prompt, attempt number), so a run is reproducible whatever the thread scheduling. `fault_for(prompt,
attempt) -> fault | None` picks faults by hand instead, from FAULTS and SCRIPTED: 400/401/403/404 and a 404
`model_not_found`, a 200 with null content, with no usage or a usage of the wrong shape, a reply whose raw
bytes hold a lone surrogate, and a bare-text 500 (`crash`). Every request is recorded: `srv.requests` (parsed bodies) and `srv.attempts` (prompt
text -> number of requests seen).

As a script, `python tests/support/openai_server.py --port-file F [--latency-s S]` serves pubmedqa_responder
until killed, after writing its base_url to F; each answer then takes S seconds more, and GET /v1/_stats returns
{"requests": number of POSTs seen}, so another process (bench/teacher.py) can count them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import signal
import email.policy
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("429_retry_after", "429", "500", "slow", "drop", "malformed")
SCRIPTED = ("400", "401", "403", "404", "model_not_found", "null_content", "no_usage", "bad_usage", "raw_surrogate",
            "crash")
LABELS = ("yes", "no", "maybe")


def _pick(*parts: object) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def _task_field(prompt: str, name: str) -> str:
    """The value of "name: ..." in the prompt's last item (after the worked example)."""
    task = prompt.rsplit("### Task", 1)[-1]
    m = re.search(rf"^{name}:[ \t]*(.*)$", task, re.MULTILINE)
    return m.group(1).strip() if m else ""


def pubmedqa_responder(prompt: str) -> str:
    """A deterministic, valid teacher for medaug's prompts, built from the item's own text.

    rewrite prompt -> {"question": "In this study, <question, first letter lowercased>"}
    new prompt     -> a question about the abstract's first words, a label hashed from the abstract,
                      and the abstract's first sentence as the explanation
    anything else  -> a yes/no/maybe label hashed from the prompt (e.g. a few-shot classification prompt)
    """
    if "Original question:" in prompt and "Rewrite the research question" in prompt:
        q = _task_field(prompt, "Original question")
        return json.dumps({"question": f"In this study, {q[:1].lower()}{q[1:]}"})
    if "Write a new research question" in prompt:
        abstract = _task_field(prompt, "Abstract")
        first = re.split(r"(?<=[.!?])\s+", abstract, maxsplit=1)[0]
        topic = " ".join(re.findall(r"[A-Za-z0-9-]+", abstract)[:8]).lower()
        h = _pick(abstract)
        question = ("Do the findings on {} support the authors' conclusion?",
                    "Was a clear effect found in the study of {}?",
                    "Is the main result about {} consistent with the hypothesis?")[h % 3].format(topic)
        return json.dumps({"question": question, "answer": LABELS[h // 3 % 3], "explanation": first})
    return LABELS[_pick(prompt) % 3]


def _options(task: str) -> dict[str, str]:
    """The "A. text" option lines of a prompt's task section."""
    return dict(re.findall(r"^([A-Z])\. (.*)$", task, re.MULTILINE))


class ExamTeacher:
    """A deterministic teacher for medaug's multiple-choice prompts (task.answer: options), with planted faults
    keyed on a hash h of the parent's stem, and a memory of the answer it meant for each stem it wrote, so its blind
    consistency answers can agree or not:

    rewrite   -> the stem's words in reverse order (a paraphrase no n-gram check mistakes for the parent); h % 4 == 0:
                 "Put another way: <stem>", a near copy the dedup step must catch
    new       -> a stem on the parent's first words, options "<parent option> (variant h)", the answer always at A
                 (a letter-biased teacher); h % 6 == 0: two identical options, in the repair too; h % 6 == 1: the
                 correct option's text in the stem
    grounded  -> the same on the passage's first words
    progressive -> a chain of the asked number of steps on the case (h of the case): each step a reveal (the next
                 sentences of the case), a question and options, the answer letter rotating; h % 5 == 0: step 2 has
                 two identical options (the chain is rejected whole); h % 5 == 1: step 2's stem holds its answer
    judge     -> 5 on every criterion; h % 7 == 3: overall "2"
    consistency (blind) -> the letter now holding the answer it meant, lower-cased ("c"); h % 5 == 4: another letter
    anything else -> a letter hashed from the question (the few-shot teacher baseline)
    """

    def __init__(self) -> None:
        self.meant: dict[str, str] = {}  # stem -> the text of the option it meant as correct
        self.lock = threading.Lock()

    def _remember(self, stem: str, text: str) -> None:
        with self.lock:
            self.meant[" ".join(stem.split())] = text

    def __call__(self, prompt: str) -> str:
        task = prompt.rsplit("### Task", 1)[-1]
        stem, opts = _task_field(task, "Question"), _options(task)
        h = _pick(stem or _task_field(task, "Passage"))
        if prompt.startswith("Rewrite the stem of an exam question"):
            new = f"Put another way: {stem}" if h % 4 == 0 else \
                " ".join(reversed(re.findall(r"[A-Za-z0-9-]+", stem))) + "?"
            self._remember(new, opts[_task_field(task, "Answer")])
            return json.dumps({"question": new})
        if prompt.startswith(("Write a new exam question", "Write an exam question")):
            seed = stem or _task_field(task, "Passage")
            topic = " ".join(re.findall(r"[A-Za-z0-9-]+", seed)[:6]).lower()
            texts = list(opts.values()) or ["first choice", "second choice", "third choice", "fourth choice"]
            options = {x: f"{t} (variant {h % 997})" for x, t in zip("ABCD", texts)}
            question = f"About {topic}, which option is marked {h % 991}?"
            if h % 6 == 0:
                options["B"] = options["A"]
            elif h % 6 == 1:
                question = f"Given that {options['A']}, about {topic}, which option holds?"
            self._remember(question, options["A"])
            return json.dumps({"question": question, **options, "answer": "A", "explanation": f"Because of {topic}."})
        if prompt.startswith("Turn the case below into a progressive exam case"):
            return json.dumps(self._chain(task, int(re.search(r"exam case of (\d+) steps", prompt).group(1))))
        if prompt.startswith("Rate an exam question"):
            return json.dumps({"answerable": "5", "supported": "5", "sound": "5", "well_formed": "5",
                               "score": "2" if h % 7 == 3 else "5"})
        with self.lock:
            meant = self.meant.get(" ".join(stem.split()))
        if meant is not None and prompt.startswith("Answer an exam question"):
            assert not re.search(r"^Answer:", task, re.MULTILINE), "consistency must answer blind"
            letter = next(x for x, t in opts.items() if t == meant)
            if h % 5 == 4:
                letter = next(x for x in opts if x != letter)
            return json.dumps({"answer": letter.lower()})
        return json.dumps({"answer": "ABCD"[h % 4]})


    def _chain(self, task: str, steps: int) -> dict[str, str]:
        case = _task_field(task, "Case")
        h = _pick(case)
        topic = " ".join(re.findall(r"[A-Za-z0-9-]+", case)[:6]).lower()
        sentences = [x for x in re.split(r"(?<=\.) ", case) if x] or [case]
        reply = {}
        for n in range(1, steps + 1):
            options = {x: f"{topic} finding {n}{x.lower()} (variant {h % 997})" for x in "ABCD"}
            answer = "ABCD"[(h + n) % 4]
            question = f"In part {n} about {topic}, which finding is marked {h % 991}?"
            if n == 2 and h % 5 == 0:
                options["C"] = options["D"]
            elif n == 2 and h % 5 == 1:
                question = f"Given that {options[answer]}, in part 2 about {topic}, which holds?"
            self._remember(question, options[answer])
            part = " ".join(sentences[(n - 1) * len(sentences) // steps:n * len(sentences) // steps])
            reply |= {f"reveal{n}": part or f"Nothing more is found at step {n}.", f"question{n}": question,
                      **{f"{x}{n}": t for x, t in options.items()}, f"answer{n}": answer}
        return reply


class AnswersThenHangs:
    """A responder that answers the first `n` prompts at once and holds every later one until `release()` (or
    `timeout_s`): for killing a run while requests are in flight. `answered` lists the prompts answered."""

    def __init__(self, n: int, responder: Callable[[str], str] = pubmedqa_responder, timeout_s: float = 120):
        self.n, self.responder, self.timeout_s = n, responder, timeout_s
        self.answered: list[str] = []
        self._gate, self._lock = threading.Event(), threading.Lock()

    def __call__(self, prompt: str) -> str:
        with self._lock:
            first = len(self.answered) < self.n
            if first:
                self.answered.append(prompt)
        if not first:
            self._gate.wait(self.timeout_s)
        return self.responder(prompt)

    def release(self) -> None:
        self._gate.set()


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the default listen backlog (5) resets connections when many clients open at once


class OpenAIServer:
    def __init__(self, responder: Callable[[str], str] = pubmedqa_responder, *, fault_rate: float = 0.0,
                 faults: tuple[str, ...] = FAULTS, seed: int = 0, retry_after_s: float = 0.1,
                 slow_s: float = 2.0, model: str = "fake-teacher", port: int = 0,
                 refuse_response_format: bool | dict[str, int] = False, chat_template: bool | str = True,
                 completions: bool = True, batch_hold: bool = False, batch_expire: bool = False,
                 batches: bool = True,
                 fault_for: Callable[[str, int], str | None] | None = None,
                 count_tokens: Callable[[str], int] = lambda text: len(text.split())):
        assert 0.0 <= fault_rate <= 1.0 and set(faults) <= set(FAULTS)
        # True: every response_format answered 400, as an endpoint without structured outputs; {type: status}: those
        # types refused with that status and a pydantic-style body naming response_format (servers that take
        # json_object but not json_schema answer 422 or 500)
        self.refused_formats = ({"json_schema": 400, "json_object": 400} if refuse_response_format is True else
                                dict(refuse_response_format or {}))
        # False: a base model without a chat template: chat requests get a 500 whose JSON body names the template
        # (as vLLM's 400 does); "crash": a bare "Internal Server Error" 500, as `transformers serve` answers;
        # /v1/completions continues the prompt (see do_POST). completions=False: no /v1/completions (404, as
        # OpenAI answers it for a chat model)
        self.chat_template, self.completions = chat_template, completions
        self.fault_for = fault_for
        self.count_tokens = count_tokens  # the usage it reports: words by default
        self.billed: list[tuple[int, int]] = []  # (prompt, completion) tokens of every 200 with a usage
        self.responder, self.fault_rate, self.faults, self.seed = responder, fault_rate, tuple(faults), seed
        self.retry_after_s, self.slow_s, self.model = retry_after_s, slow_s, model
        self.requests: list[dict] = []
        # the Files and Batches endpoints (OpenAI's wire format): uploaded files, batches, every batch line answered.
        # A batch runs at its first look after creation, or, with batch_hold, once release_batches() is called;
        # batch_expire: it expires half done (the rest in its error file as batch_expired)
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.batch_lines: list[dict] = []
        self.batch_expire, self.batch_api = batch_expire, batches  # batches=False: /v1/files and /v1/batches 404
        self._batch_release = threading.Event()
        if not batch_hold:
            self._batch_release.set()
        self.attempts: Counter[str] = Counter()
        self.faults_served: Counter[str] = Counter()
        self.fault_log: list[tuple[str, int, str]] = []  # (prompt, attempt number, fault)
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, client_address: None  # clients hanging up are expected
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> OpenAIServer:
        self._thread.start()
        backend = sys.modules.get("medaug.llm.openai_backend")
        if backend is not None:  # a new server on a port an earlier one had: the backend has learnt nothing of it
            for learnt in (backend._formats, backend._completions, backend._chat_only):
                for key in [k for k in learnt if k[0] == self.base_url]:
                    learnt.remove(key) if isinstance(learnt, set) else learnt.pop(key)
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def release_batches(self) -> None:
        self._batch_release.set()

    def _file(self, content: bytes, purpose: str, filename: str) -> dict:
        fid = f"file-{len(self.files) + 1:04d}"
        self.files[fid] = content
        return {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed"}

    def _run_batch(self, batch: dict) -> None:
        """Answer every line of the batch's input file as the HTTP endpoint would (responder, faults by prompt),
        writing OpenAI's output and error files."""
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]].decode().splitlines() if x.strip()]
        run = lines[:len(lines) // 2] if self.batch_expire else lines
        out, err = [], []
        for n, line in enumerate(run):
            body = line["body"]
            self.batch_lines.append(line)
            completion = line["url"] == "/v1/completions"
            prompt = body["prompt"] if completion else \
                "\n".join(m.get("content", "") for m in body["messages"] if m.get("role") == "user")
            self.attempts[prompt] += 1
            fault = self._fault(prompt, self.attempts[prompt])
            rid = f"batch_req_{batch['id']}_{n}"
            if fault in ("500", "429", "400"):
                err.append({"id": rid, "custom_id": line["custom_id"], "response": {
                    "status_code": int(fault), "request_id": rid, "body": {"error": {
                        "message": f"injected fault {fault}", "type": "server_error"}}}, "error": None})
                continue
            text = self.responder(prompt)
            usage = {"prompt_tokens": self.count_tokens(prompt), "completion_tokens": self.count_tokens(text)}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None} if completion else \
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                 "logprobs": None}
            out.append({"id": rid, "custom_id": line["custom_id"], "response": {
                "status_code": 200, "request_id": rid, "body": {
                    "id": f"chatcmpl-{rid}", "object": "text_completion" if completion else "chat.completion",
                    "created": int(time.time()), "model": body.get("model", self.model), "choices": [choice],
                    "usage": usage}}, "error": None})
        for line in lines[len(run):]:
            err.append({"id": f"batch_req_{batch['id']}_x", "custom_id": line["custom_id"], "response": None,
                        "error": {"code": "batch_expired", "message": "This request could not be executed before "
                                                                      "the completion window expired."}})
        now = int(time.time())
        batch.update(status="expired" if self.batch_expire else "completed", in_progress_at=now,
                     request_counts={"total": len(lines), "completed": len(out), "failed": len(err)},
                     **{"expired_at" if self.batch_expire else "completed_at": now})
        for key, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                content = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[key] = self._file(content, "batch_output", f"{batch['id']}_{key}.jsonl")["id"]

    def _fault(self, prompt: str, attempt: int) -> str | None:
        if self.fault_for is not None:
            return self.fault_for(prompt, attempt)
        rng = random.Random(_pick(self.seed, prompt, attempt))
        return rng.choice(self.faults) if rng.random() < self.fault_rate else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall

            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                headers = dict(headers or {})
                self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.rstrip("/")
                if path.startswith("/v1/batches/"):
                    with srv._lock:
                        batch = srv.batches.get(path.rsplit("/", 1)[1])
                        if batch is None:
                            return self._send(404, b'{"error": {"message": "No batch found"}}')
                        if batch["status"] == "in_progress" and srv._batch_release.is_set():
                            srv._run_batch(batch)
                        return self._send(200, json.dumps(batch).encode())
                if path.startswith("/v1/files/") and path.endswith("/content"):
                    content = srv.files.get(path.split("/")[3])
                    if content is None:
                        return self._send(404, b'{"error": {"message": "No such file"}}')
                    return self._send(200, content, {"Content-Type": "application/octet-stream"})
                if self.path.rstrip("/") == "/v1/_stats":
                    with srv._lock:
                        return self._send(200, json.dumps({"requests": len(srv.requests)}).encode())
                if self.path.rstrip("/") != "/v1/models":
                    return self._send(404, b'{"error": {"message": "not found"}}')
                data = [{"id": srv.model, "object": "model", "created": 0, "owned_by": "medaug-tests"}]
                self._send(200, json.dumps({"object": "list", "data": data}).encode())

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not srv.batch_api and self.path.rstrip("/") in ("/v1/files", "/v1/batches"):
                    return self._send(404, b'{"error": {"message": "Not Found", "type": "invalid_request_error"}}')
                if self.path.rstrip("/") == "/v1/files":  # multipart: purpose, file
                    form = BytesParser(policy=email.policy.HTTP).parsebytes(
                        b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw)
                    parts = {part.get_param("name", header="content-disposition"): part for part in form.iter_parts()}
                    with srv._lock:
                        obj = srv._file(parts["file"].get_payload(decode=True),
                                        parts["purpose"].get_payload(decode=True).decode(), parts["file"].get_filename())
                    return self._send(200, json.dumps(obj).encode())
                body = json.loads(raw or b"{}")
                if self.path.rstrip("/") == "/v1/batches":
                    with srv._lock:
                        if body.get("input_file_id") not in srv.files:
                            return self._send(400, b'{"error": {"message": "input_file_id not found"}}')
                        bid = f"batch_{len(srv.batches) + 1:04d}"
                        now = int(time.time())
                        srv.batches[bid] = batch = {
                            "id": bid, "object": "batch", "endpoint": body["endpoint"], "errors": None,
                            "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
                            "status": "in_progress", "output_file_id": None, "error_file_id": None,
                            "created_at": now, "in_progress_at": now, "expires_at": now + 86400, "finalizing_at": None,
                            "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None,
                            "cancelled_at": None, "request_counts": {
                                "total": srv.files[body["input_file_id"]].count(b"\n"), "completed": 0, "failed": 0},
                            "metadata": body.get("metadata")}
                    return self._send(200, json.dumps(batch).encode())
                path = self.path.rstrip("/")
                if path not in ("/v1/chat/completions", "/v1/completions"):
                    return self._send(404, b'{"error": {"message": "not found"}}')
                completion = path == "/v1/completions"
                if (completion and not srv.completions) or (not completion and srv.chat_template is not True):
                    with srv._lock:
                        srv.requests.append(body)
                    if completion:
                        return self._send(404, json.dumps({"error": {"message": "This is a chat model and not "
                                                                     "supported in the v1/completions endpoint"}}).encode())
                    if srv.chat_template == "crash":
                        return self._send(500, b"Internal Server Error", {"Content-Type": "text/plain"})
                    return self._send(500, json.dumps({"error": {  # transformers' own words
                        "message": "Cannot use chat template functions because tokenizer.chat_template is not set "
                                   "and no template argument was passed!", "type": "server_error"}}).encode())
                # a completion: the responder answers the prompt less the reply's prefilled opening, and the server
                # continues from that opening, then runs on into a next item as a base model does (the client cuts)
                prefilled = re.search(r' ?(\{(?:"\w+": ")?)$', body.get("prompt", "")) if completion else None
                prompt = body["prompt"][:prefilled.start()] if prefilled else body.get("prompt", "") if completion \
                    else "\n".join(m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user")
                refused = srv.refused_formats.get((body.get("response_format") or {}).get("type"))
                if refused:
                    with srv._lock:
                        srv.requests.append(body)
                    if refused == 400:  # OpenAI's own wording
                        return self._send(400, json.dumps({"error": {
                            "message": "Unsupported parameter: 'response_format'", "type": "invalid_request_error",
                            "param": "response_format"}}).encode())
                    return self._send(refused, json.dumps({"detail": [{  # a pydantic request model's refusal
                        "type": "literal_error", "loc": ["body", "response_format", "type"],
                        "msg": "Input should be 'text' or 'json_object'", "input": body["response_format"]["type"]}]
                    }).encode())
                with srv._lock:
                    srv.requests.append(body)
                    srv.attempts[prompt] += 1
                    fault = srv._fault(prompt, srv.attempts[prompt])
                    if fault:
                        srv.faults_served[fault] += 1
                        srv.fault_log.append((prompt, srv.attempts[prompt], fault))
                err = json.dumps({"error": {"message": f"injected fault {fault}", "type": "server_error"}}).encode()
                if fault == "429_retry_after":
                    return self._send(429, err, {"Retry-After": f"{srv.retry_after_s:g}"})
                if fault == "429":
                    return self._send(429, err)
                if fault == "500":
                    return self._send(500, err)
                if fault == "crash":  # an exception the server did not handle: starlette's bare 500
                    return self._send(500, b"Internal Server Error", {"Content-Type": "text/plain"})
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault == "malformed":
                    return self._send(200, b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": [{"ind')
                if fault in ("400", "401", "403", "404", "model_not_found"):
                    code = {"400": "invalid_value", "401": "invalid_api_key", "403": "permission_denied"}.get(
                        fault, "model_not_found")
                    return self._send(404 if fault == "model_not_found" else int(fault), json.dumps({"error": {
                        "message": f"injected {fault}", "type": "invalid_request_error", "code": code}}).encode())
                if fault == "slow":
                    time.sleep(srv.slow_s)
                text = srv.responder(prompt)
                usage = {"prompt_tokens": srv.count_tokens(prompt), "completion_tokens": srv.count_tokens(text)}
                with srv._lock:
                    srv.billed.append((usage["prompt_tokens"], usage["completion_tokens"]))
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                if completion:
                    opening = prefilled.group(1) if prefilled else ""
                    text = (text[len(opening):] if text.startswith(opening) else text) + "\n\nQuestion: and more"
                if fault == "raw_surrogate":
                    text = text[:-2] + "\ud83d" + text[-2:]  # raw bytes ED A0 BD below: not UTF-8
                resp = {"id": f"chatcmpl-{len(srv.requests)}", "object": "chat.completion",
                        "created": int(time.time()), "model": body.get("model", srv.model),
                        "choices": [{"index": 0, "message": {"role": "assistant",
                                                             "content": None if fault == "null_content" else text},
                                     "finish_reason": "stop", "logprobs": None}],
                        **({"object": "text_completion"} if completion else {}),
                        "usage": {"no_usage": None, "bad_usage": [usage]}.get(fault, usage)}
                if fault == "no_usage":
                    del resp["usage"]
                if completion:
                    resp["choices"][0] = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
                try:
                    self._send(200, json.dumps(resp, ensure_ascii=False).encode("utf-8", "surrogatepass"))
                except OSError:
                    pass  # the client gave up (timeout)

        return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port-file", required=True, help="write the server's base_url here once it listens")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--latency-s", type=float, default=0.0, help="extra seconds before every answer")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))

    def responder(prompt: str) -> str:
        time.sleep(args.latency_s)
        return pubmedqa_responder(prompt)

    with OpenAIServer(responder, fault_rate=args.fault_rate, port=args.port) as srv:
        tmp = f"{args.port_file}.tmp"
        with open(tmp, "w") as f:
            f.write(srv.base_url + "\n")
        os.replace(tmp, args.port_file)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
