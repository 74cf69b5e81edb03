"""params.yaml, parsed once into typed dataclasses.

Every knob of the pipeline lives here with its type, default and meaning (like TRL's SFTConfig).
Unknown keys and bad values fail with the key path and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from medaug.data.jsonl import decode_utf8
from medaug.errors import MedaugError
from medaug.paths import BASELINE, ROUND, ZERO_SHOT, Candidate


# ---------------------------------------------------------------- what a stage reads (issue 31)

CHECK_READS = "MEDAUG_CHECK_PARAMS"
"""Set (to 1) in a DVC stage's environment: the stage records every params key it reads (from `load_params` on)
and, at its end, fails on a key its dvc.yaml entry does not declare (`medaug.declared`). The test suite sets it
(tests/conftest.py), so every DAG test runs every stage under the check. Off by default: a user's stage would
fail after its work is done (the check itself costs about a second once per dvc.yaml and params.yaml, when it
asks DVC for every stage's declaration)."""

_reads: set[str] | None = None  # the keys read since load_params, while tracing
_loaded: Any = None  # the Params load_params returned, while tracing


class _Traced:
    """Mixed into every params dataclass: while tracing, reading a field records its key path (`train.lora.r`); a
    field that is itself a section or a mapping records nothing until something is read inside it."""

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if _reads is not None and name[0] != "_":
            fields = object.__getattribute__(self, "__dict__")
            # a field (not a method) holding a value: a section or mapping records what is read inside it
            if "_key" in fields and name in fields and not isinstance(value, (_Traced, _TracedDict)):
                _reads.add(f"{fields['_key']}.{name}" if fields["_key"] else name)
        return value


class _TracedDict(dict):
    """A params mapping (models, variants, generate.teachers, evaluate.teacher) while tracing: reading one key
    (`[k]`, `get`, `in`) records `<mapping>.<key>`; iterating, sizing or copying it records the whole mapping."""
    _key: str | None = None

    def _read(self, k: Any = None) -> None:
        if _reads is not None and self._key is not None:
            _reads.add(self._key if k is None else f"{self._key}.{k}")


def _recording(name: str, one_key: bool) -> Any:
    """dict's method `name`, recording the key it reads (`one_key`) or the whole mapping."""
    method = getattr(dict, name)

    def recorded(self: _TracedDict, *args: Any) -> Any:
        self._read(args[0] if one_key else None)
        return method(self, *args)

    recorded.__name__ = name
    return recorded


for _name, _one_key in (("__getitem__", True), ("get", True), ("__contains__", True), ("__iter__", False),
                        ("__len__", False), ("keys", False), ("items", False), ("values", False)):
    setattr(_TracedDict, _name, _recording(_name, _one_key))


def _keyed(obj: Any, key: str) -> Any:
    """`obj` with its key path set on every params object and mapping in it (what tracing records under)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        object.__setattr__(obj, "_key", key)
        for f in dataclasses.fields(obj):
            sub = f"{key}.{f.name}" if key else f.name
            object.__setattr__(obj, f.name, _keyed(object.__getattribute__(obj, f.name), sub))
    elif isinstance(obj, dict):
        obj = _TracedDict({k: _keyed(v, f"{key}.{k}") for k, v in obj.items()})
        obj._key = key
    return obj


def tracing() -> bool:
    """Is this process a DVC stage under the read check?"""
    return bool(os.environ.get(CHECK_READS)) and bool(os.environ.get("DVC_STAGE"))


@contextmanager
def untraced() -> Iterator[None]:
    """Reads that decide no output (validation, MLflow logging, checkpoint keys) are not the stage's params."""
    global _reads
    saved, _reads = _reads, None
    try:
        yield
    finally:
        _reads = saved


def task_file() -> str:
    """`task.file` of the params load_params read (what dvc.yaml's `${task.file}` names), not recorded as a read."""
    with untraced():
        return _loaded.task.file if _loaded is not None else ""


def asdict_without(obj: Any, leave: tuple[str, ...] | set[str]) -> dict[str, Any]:
    """dataclasses.asdict(obj) less the fields in `leave`, recording (under the read check) only the others."""
    with untraced():
        d = dataclasses.asdict(obj)
    for k in d:
        if k not in leave:  # read it (a section: every key in it) as asdict would
            value = getattr(obj, k)
            if dataclasses.is_dataclass(value):
                dataclasses.asdict(value)
            elif isinstance(value, dict):
                dict(value)
    return {k: v for k, v in d.items() if k not in leave}


def reads() -> set[str] | None:
    """The keys read since load_params, or None when not tracing."""
    return None if _reads is None else set(_reads)


@dataclass
class DataParams(_Traced):
    source: str = "src/medaug/data/sample/ori_pqal_sample.json"
    """The task's source data, a path relative to the project (or absolute), and a dependency of the prepare stage
    (dvc.yaml `${data.source}`): editing its bytes reruns prepare and what follows. PubMedQA: an `ori_pqal.json`, a
    .parquet/.jsonl file in the hub schema, or a folder with `train.parquet`/`train.jsonl`; an exam task: a folder
    with one <split>.jsonl/.parquet per split. The default is PubMedQA's bundled synthetic sample; the exam tasks'
    are the folders of src/medaug/data/sample/. `medaug data fetch` downloads the task's hub dataset at a pinned
    revision into such a folder."""
    fold: int = 0
    """PubMedQA: which of the 10 official cross-validation folds is train/dev (0-9)."""

    def check(self, key: str) -> None:
        if not 0 <= self.fold <= 9:
            raise MedaugError(f"params.yaml: {key}.fold = {self.fold} is out of range (allowed: 0-9)")
        if self.source in ("sample", "hub", ""):
            fix = ("src/medaug/data/sample/ori_pqal_sample.json (PubMedQA), or a folder of src/medaug/data/sample/ "
                   "for the other tasks" if self.source != "hub" else
                   "the folder `medaug data fetch` writes (the task's hub dataset at a pinned revision)")
            raise MedaugError(f"params.yaml: {key}.source = {self.source!r} is no path: data.source names the file or "
                              f"folder prepare reads, which DVC hashes; set it to {fix}")


@dataclass
class SplitParams(_Traced):
    """How a task's source becomes train/dev/test (a task file's `split:`)."""
    kind: Literal["pubmedqa", "given"] = "pubmedqa"
    """`pubmedqa`: PubMedQA's official PQA-L split (500 test; CV fold `data.fold` of the rest is dev); `given`: the
    source's own named splits (`train`, `test`), dev a seeded `dev_size` items taken from train (at most a fifth
    of it, so a small sample keeps most of its items for training)."""
    train: str = "train"
    test: str = "test"
    """The source split scored as test (MedMCQA: `validation`, its test labels are hidden)."""
    dev_size: int = 100
    seed: int = 0

    def check(self, key: str) -> None:
        if self.dev_size < 1:
            raise MedaugError(f"params.yaml: {key}.dev_size must be >= 1 (got {self.dev_size})")


TASK_FILE_KEYS = ("name", "description", "loader", "hub_id", "hub_config", "hub_revision", "split", "answer", "choices",
                  "template", "examples")
"""TaskParams fields that come from the task file (`task.file`), never from params.yaml."""


@dataclass
class TaskParams(_Traced):
    """The task is data (as in lm-evaluation-harness): `task.file` (a YAML file, src/medaug/tasks/ ships
    pubmedqa, medqa and medmcqa) names the source, split, answer kind and prompt; params.yaml adds how long a
    prompt may be and whether it goes through a chat template. The defaults are the PubMedQA task."""
    file: str = "src/medaug/tasks/pubmedqa.yaml"
    """The task file, relative to the project root ("" = the built-in PubMedQA task, the same as this file)."""
    max_seq_len: int = 256
    """Prompt tokens beyond this are cut from the start of the context (PubMedQA's results and conclusions come
    last); the question, the options and the answer always stay."""
    format: Literal["plain", "chat"] = "plain"
    """`plain`: the template as text, the answer after it as " yes" (base models, lm-eval's format); `chat`: the
    template as the user turn of the tokenizer's chat template, the answer as the assistant's reply
    (instruction-tuned models)."""
    shuffle_options: bool = False
    """Multiple choice: reorder each item's options (seeded by `shuffle_seed` and the item's id; the answer letter
    follows its text) in every split, so a letter bias of the source or the model shows, or is trained away."""
    shuffle_seed: int = 0
    name: str = "pubmedqa"
    description: str = ""
    loader: str = "pubmedqa"
    """How `data.source` becomes train/dev/test: a module of src/medaug/data/loaders/ (pubmedqa, medqa, medmcqa,
    progressive: a chain of questions per case); checked by the prepare stage and `medaug check-params`."""
    hub_id: str = "qiaojin/PubMedQA"
    hub_config: str | None = "pqa_labeled"
    """The task's dataset on the Hugging Face Hub (and its config): what `medaug data fetch` downloads."""
    hub_revision: str | None = None
    """The revision `medaug data fetch` downloads (a commit sha pins it; None: the hub's `main` at that moment, whose
    sha the fetched folder records)."""
    split: SplitParams = field(default_factory=SplitParams)
    answer: Literal["labels", "options"] = "labels"
    """`labels`: every item's answer is one of `choices`; `options`: each item has its own lettered options
    (`choices` are the letters) and the answer is the correct letter."""
    choices: list[str] = field(default_factory=lambda: ["yes", "no", "maybe"])
    template: str = "Abstract: {context}\nQuestion: {question}\nAnswer:"
    """The prompt: {question}, and {context} and (answer: options) {options} as "A. ..." lines; {history}, a
    progressive question's earlier steps with their answers ("Earlier question: ...\nIts answer: ...\n" each)."""
    examples: list[dict[str, Any]] = field(default_factory=list)
    """Hand-written questions in the registered model's input format (`question`, `contexts` or `context`,
    `options`, `history`): every candidate answers them as the served model would, in its evaluate report
    (`examples`); the first is the registered model's input example. The docs' serving example is the PubMedQA
    task's, and tests/unit/test_docs.py checks the answer the docs show against the champion's report."""

    def check(self, key: str) -> None:
        fields = ["{question}"] + (["{options}"] if self.answer == "options" else [])
        for name in fields:
            if name not in self.template:
                raise MedaugError(f"params.yaml: {key}.template must contain {name}")
        if self.answer == "labels" and "{options}" in self.template:
            raise MedaugError(f"params.yaml: {key}.template has {{options}}, but answer is labels (use answer: "
                              f"options for lettered options)")
        if len(self.choices) < 2 or len(set(self.choices)) != len(self.choices) or not all(
                c.strip() and c == c.strip() for c in self.choices):
            raise MedaugError(f"params.yaml: {key}.choices must be 2 or more distinct non-empty answers without "
                              f"surrounding spaces (got {self.choices})")
        if self.max_seq_len < 1:
            raise MedaugError(f"params.yaml: {key}.max_seq_len must be >= 1 (got {self.max_seq_len})")
        if self.shuffle_options and self.answer != "options":
            raise MedaugError(f"params.yaml: {key}.shuffle_options is for multiple-choice tasks; {self.name} answers "
                              f"with labels ({', '.join(self.choices)})")


@dataclass
class Price(_Traced):
    input: float = 0.0
    """USD per 1M prompt tokens."""
    output: float = 0.0
    """USD per 1M completion tokens."""
    batch: float = 0.5
    """The share of these prices a request pays in a provider batch (teacher.batch; OpenAI's Batch API: half)."""

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1e6

    def check(self, key: str) -> None:
        if self.input < 0 or self.output < 0 or not 0 <= self.batch <= 1:
            raise MedaugError(f"params.yaml: {key} prices must be >= 0, and its batch share in [0, 1]")


@dataclass
class TeacherParams(_Traced):
    backend: Literal["local", "openai"] = "local"
    """`local`: in-process transformers generation; `openai`: any OpenAI-compatible endpoint, whose URL and
    key come from the environment (OPENAI_BASE_URL, OPENAI_API_KEY), never from this file."""
    model: str = "gemma-3-270m"
    """local: a model reference (see `models`); openai: the model name the endpoint serves."""
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 64
    """local backend: sample among the top_k most likely tokens (then top_p of those), as Gemma's own generation
    config does; 0 = the whole vocabulary. An OpenAI-compatible endpoint uses its own."""
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    """local backend: the teacher's weights and arithmetic. fp32 (the default) samples the same items on any CPU
    (up to float32 rounding) and writes the same greedy tokens as transformers' `generate` in fp32. auto: bf16 where
    this CPU multiplies bf16 natively (AVX512-BF16 or AMX; about twice as fast), else fp32, so the data, and the
    scores trained on it, depend on the machine. Part of each answer's cache key (as resolved), so answers of one
    precision are never served for the other."""
    max_new_tokens: int = 64
    seed: int = 0
    batch_size: int = 32
    """local backend: prompts decoded together (grouped by length; a finished reply leaves its batch at once)."""
    max_concurrency: int = 4
    """openai backend: requests in flight."""
    timeout_s: float = 60.0
    max_attempts: int = 4
    """openai backend: attempts per request in all (first try + retries)."""
    backoff_s: float = 1.0
    """openai backend: wait before the first retry; doubles each attempt, with jitter; a longer Retry-After wins."""
    rpm: int = 0
    """openai backend: at most this many requests per minute, retries included (0 = no limit)."""
    tpm: int = 0
    """openai backend: at most this many tokens per minute, counted as the provider does before the reply:
    estimated prompt tokens + max_new_tokens (0 = no limit)."""
    endpoint: Literal["auto", "chat", "completions"] = "auto"
    """openai backend: `chat` (/v1/chat/completions: instruction-tuned models, every hosted API), `completions`
    (/v1/completions: a base model behind vLLM, TGI, llama.cpp or `transformers serve`, prompted exactly as the
    local backend prompts it: the plain prompt, a JSON reply prefilled with its opening, the reply cut where its
    item ends), or `auto`: chat, until the endpoint answers an error naming the chat template (a model without one,
    as a converted base model is), then completions for the rest of the stage, at no attempt. Part of the request
    key (as set, `auto` included)."""
    response_format: Literal["json_schema", "json_object", "none"] = "json_schema"
    """openai backend, for replies that must be JSON: `json_schema` (structured outputs), `json_object`, or
    `none` (the prompt's instructions only). An endpoint that refuses it (any HTTP error naming response_format
    or json_schema) is asked one step lower by itself, for the rest of the stage; no attempt is spent on that."""
    repair_attempts: int = 1
    """A JSON reply that fails to parse or validate is sent back once with the reason (0 = never)."""
    batch: bool = False
    """openai backend: send a stage's requests as one provider batch (/v1/files + /v1/batches, OpenAI's Batch API
    and the compatible ones: answers within 24 h at `prices.<model>.batch` of the price) instead of one by one.
    The batch id and the request keys it covers are kept in the teacher cache before anything is awaited, so a
    killed stage polls the same batch again instead of paying twice; repairs go out as a second batch. Per stage
    or teacher through evaluate.teacher, filter.teacher or generate.teachers."""
    batch_poll_s: float = 30.0
    """openai backend, batch mode: seconds between two looks at a batch's status."""
    prices: dict[str, Price] = field(default_factory=dict)
    """USD per 1M tokens, by teacher.model, e.g. {gpt-4o-mini: {input: 0.15, output: 0.6}}; a model not listed
    costs 0 (a local model, your own vLLM)."""
    budget_usd: float = 0.0
    """Stop before one stage's spend across all its teachers would pass this (0 = no cap). Answers paid so far
    stay in the cache, so raising the budget and rerunning pays only for the rest."""
    max_failed_share: float = 0.0
    """The share of one stage's teacher requests that may fail for a transport/HTTP reason (after every retry)
    without failing the stage, 0-1. 0 (default): any such failure makes the stage exit non-zero after every
    answer received is cached, and a rerun re-sends only the failed requests. Content rejects (a reply still
    unusable after repair) are not failures."""
    cache: str = ".cache/teacher.sqlite"
    """sqlite request cache; a rerun pays for nothing twice."""

    def check(self, key: str) -> None:
        for name in ("max_new_tokens", "batch_size", "max_concurrency", "max_attempts"):
            if getattr(self, name) < 1:
                raise MedaugError(f"params.yaml: {key}.{name} must be >= 1 (got {getattr(self, name)})")
        if self.timeout_s <= 0 or self.backoff_s < 0:
            raise MedaugError(f"params.yaml: {key}.timeout_s must be > 0 and {key}.backoff_s >= 0")
        for name in ("rpm", "tpm", "repair_attempts", "budget_usd", "temperature", "top_k"):
            if getattr(self, name) < 0:
                raise MedaugError(f"params.yaml: {key}.{name} must be >= 0 (got {getattr(self, name)})")
        if not 0 < self.top_p <= 1:
            raise MedaugError(f"params.yaml: {key}.top_p must be in (0, 1] (got {self.top_p})")
        if not 0 <= self.max_failed_share <= 1:
            raise MedaugError(f"params.yaml: {key}.max_failed_share must be in [0, 1] (got {self.max_failed_share})")
        if self.batch and self.backend != "openai":
            raise MedaugError(f"params.yaml: {key}.batch is for the openai backend (a provider's Batch API); "
                              f"{key}.backend is {self.backend!r}")
        if self.batch_poll_s <= 0:
            raise MedaugError(f"params.yaml: {key}.batch_poll_s must be > 0 (got {self.batch_poll_s})")

    @property
    def price(self) -> Price:
        """What a request costs per 1M tokens: teacher.prices for the model, at its batch share in batch mode."""
        price = self.prices.get(self.model, Price())
        return Price(price.input * price.batch, price.output * price.batch) if self.batch else price


@dataclass
class GroundedParams(_Traced):
    corpus: str = "src/medaug/augment/sample_corpus"
    """Folder of .txt/.md (paragraphs split by blank lines) and .jsonl (`text`, optional `id`, `title`) files,
    relative to the project root; required when `strategies` has `grounded` (an empty value fails rather than
    quietly grounding in PubMedQA's own abstracts, which is what `new` does). dvc.yaml tracks it as a dep."""
    chunk_tokens: int = 256
    """Passage budget in words (whitespace tokens, the same for every teacher; ~1.3 subword tokens each)."""
    overlap_tokens: int = 32
    """Words each passage repeats from the end of the one before it in the same document."""

    def check(self, key: str) -> None:
        if self.chunk_tokens < 1 or not 0 <= self.overlap_tokens < self.chunk_tokens:
            raise MedaugError(f"params.yaml: {key}.chunk_tokens must be >= 1 and {key}.overlap_tokens in "
                              f"[0, chunk_tokens) (got {self.chunk_tokens}, {self.overlap_tokens})")


@dataclass
class MeshParams(_Traced):
    descriptors: str = "src/medaug/augment/mesh_descriptors.tsv"
    """Optional file mapping MeSH headings to tree numbers, relative to the project root: NLM's mtreesYYYY.bin
    (`Heading;C14.280.647`, a line per tree number) or TSV (`Heading<TAB>C14.280.647;C14.907`). With mappings,
    `mesh` balances tree branches (C14, D27, ...) instead of headings; empty, or a file with no mapping lines
    (comments start with #), balances headings. dvc.yaml tracks it as a dep."""


@dataclass
class ProgressiveParams(_Traced):
    steps: int = 3
    """Questions per generated chain: the teacher splits the case into this many reveals, a question on each."""
    cases: Literal["train", "corpus"] = "train"
    """What the chains are about: `train`, the train split's cases (contexts; a progressive task's whole cases);
    `corpus`, the passages of `generate.grounded.corpus` (MQG's textbook route)."""

    def check(self, key: str) -> None:
        if not 2 <= self.steps <= 8:
            raise MedaugError(f"params.yaml: {key}.steps must be 2 to 8 (a chain of questions; got {self.steps})")


@dataclass
class GenerateParams(_Traced):
    strategies: list[str] = field(
        default_factory=lambda: ["rewrite", "new"])
    """Names from augment/strategies/ (one module each; checked there, by the generate stage and
    `medaug check-params`): `rewrite` and `new` (Dr.LLaMA), `grounded` (questions on passages of
    `grounded.corpus`, MQG), `mesh` (new questions on parents sampled so MeSH headings are covered evenly,
    KAILIN), `progressive` (a case turned into a chain of `progressive.steps` questions, each revealing more of
    it, MQG/ECN-QA; needs a task with {history} in its template). Mix freely; each record's `source` names the
    strategy that made it."""
    per_strategy: int = 12
    """How many items each strategy asks about (0 = all: the train split, or every corpus passage)."""
    seed: int = 0
    label_mix: dict[str, float] = field(default_factory=dict)
    """Target label weights for `rewrite` and `new`, e.g. {yes: 1, no: 1, maybe: 1}; a label left out gets none.
    `new` asks for each label in proportion (a reply with another label is rejected as `off_target`);
    `rewrite` picks parents in proportion, reusing a rare label's parents as further samples when there are
    too few. Empty: no targets (parents at random, the teacher picks the label). `grounded` and `mesh` pick
    their items by passage and heading, and never ask for a label."""
    grounded: GroundedParams = field(default_factory=GroundedParams)
    mesh: MeshParams = field(default_factory=MeshParams)
    progressive: ProgressiveParams = field(default_factory=ProgressiveParams)
    teachers: dict[str, dict[str, Any] | list[dict[str, Any]]] = field(default_factory=dict)
    """Other teachers for some strategies: strategy -> the `teacher` keys that differ, e.g.
    {new: {backend: openai, model: gpt-4o-mini}}; a list asks the strategy of each teacher in it, on the same
    items (Dr.LLaMA's GPT-3.5 vs GPT-4 row): {rewrite: [{model: gpt-3.5-turbo}, {model: gpt-4o}]}. Each record's
    `teacher.model` says which one wrote it (a list's models must differ), the funnel and cost are split by it,
    and a recipe's `teachers` selects by it. `budget_usd` is not one of the keys: teacher.budget_usd caps the
    stage's spend across all its teachers."""

    @property
    def uses_corpus(self) -> bool:
        """Whether a strategy asks about `grounded.corpus` passages (grounded, or progressive on the corpus)."""
        return "grounded" in self.strategies or ("progressive" in self.strategies
                                                 and self.progressive.cases == "corpus")

    def overrides(self, strategy: str) -> list[dict[str, Any]]:
        """The strategy's teacher overrides as a list ([{}]: the `teacher` section as it is)."""
        override = self.teachers.get(strategy) or {}
        return override if isinstance(override, list) else [override]

    def check(self, key: str) -> None:
        for name, override in self.teachers.items():  # names: augment.strategies.check
            if isinstance(override, list) and not override:
                raise MedaugError(f"params.yaml: {key}.teachers.{name} is an empty list (give one or more "
                                  f"teachers, or remove the key to use `teacher`)")
            for i, one in enumerate(self.overrides(name)):
                where = f"{key}.teachers.{name}" + (f"[{i}]" if isinstance(override, list) else "")
                if "budget_usd" in one:
                    raise MedaugError(f"params.yaml: {where}.budget_usd: the budget is per stage, not per "
                                      f"strategy; set teacher.budget_usd, which caps the whole generate stage")
        if len(set(self.strategies)) != len(self.strategies):
            raise MedaugError(f"params.yaml: {key}.strategies lists a strategy twice ({self.strategies})")
        if self.per_strategy < 0:
            raise MedaugError(f"params.yaml: {key}.per_strategy must be >= 0 (got {self.per_strategy})")
        for label, weight in self.label_mix.items():
            if weight < 0:
                raise MedaugError(f"params.yaml: {key}.label_mix.{label} must be >= 0 (got {weight})")
        if self.label_mix and not sum(self.label_mix.values()) > 0:
            raise MedaugError(f"params.yaml: {key}.label_mix needs a weight > 0 (or {{}} for no targets)")
        if self.uses_corpus and not self.grounded.corpus:
            raise MedaugError(f"params.yaml: {key}.grounded.corpus is empty; the grounded strategy (and progressive "
                              f"on the corpus) needs a folder of .txt/.md/.jsonl passages (e.g. "
                              f"src/medaug/augment/sample_corpus)")


@dataclass
class DedupParams(_Traced):
    threshold: float = 0.8
    """Drop an item whose question's Jaccard similarity (word shingles; MinHash/LSH finds the candidates) with
    a kept generated item of the same label, or with a train question, is at least this (1.0 = exact only)."""
    shingle: int = 3
    """Words per shingle."""
    num_perm: int = 128
    """MinHash permutations: more is a closer estimate, and slower."""
    embedding: bool = False
    """Also drop items whose question embedding (the packaged MiniLM) is this close to a kept or train one."""
    embedding_threshold: float = 0.95
    """Cosine similarity at or above which `embedding` calls two questions duplicates."""

    def check(self, key: str) -> None:
        if not 0 < self.threshold <= 1 or not 0 < self.embedding_threshold <= 1:
            raise MedaugError(f"params.yaml: {key}.threshold and {key}.embedding_threshold must be in (0, 1]")
        if self.shingle < 1 or self.num_perm < 1:
            raise MedaugError(f"params.yaml: {key}.shingle and {key}.num_perm must be >= 1")


@dataclass
class DecontaminateParams(_Traced):
    ngram: int = 8
    """Drop a generated item that shares a word n-gram this long with a test question or context (n-grams
    that also occur in train/dev, i.e. boilerplate, do not count). 5-13: 13 is GPT-3's and lm-eval's choice."""
    embedding: bool = False
    """Also drop items whose question or context embedding (the packaged MiniLM) is close to a test item's.
    On real PQA-L: ~35 s per run. Off for the synthetic sample, whose templated abstracts are all alike."""
    embedding_threshold: float = 0.85
    """On real PQA-L fold 0 no train/dev item reaches 0.85 against the test set (max 0.81), and hand-written
    paraphrases of test questions score 0.87-0.97."""

    def check(self, key: str) -> None:
        if not 5 <= self.ngram <= 13:
            raise MedaugError(f"params.yaml: {key}.ngram must be 5-13 (got {self.ngram}): shorter n-grams are "
                              f"common phrasing and drop clean items; longer ones match almost nothing (a question "
                              f"shorter than n words has no n-gram), which silently turns this required step off")


@dataclass
class JudgeParams(_Traced):
    min_score: int = 3
    """Keep items the teacher scores at least this on the rubric (filtering/prompts/judge.txt), 1-5."""

    def check(self, key: str) -> None:
        if not 1 <= self.min_score <= 5:
            raise MedaugError(f"params.yaml: {key}.min_score must be 1-5 (got {self.min_score})")


@dataclass
class BalanceParams(_Traced):
    max_share: float = 0.5
    """No label may be more than this share of the kept generated items (1.0 = no cap)."""

    def check(self, key: str) -> None:
        if not 1 / 3 <= self.max_share <= 1:
            raise MedaugError(f"params.yaml: {key}.max_share must be in [1/3, 1] (got {self.max_share})")


@dataclass
class FilterParams(_Traced):
    steps: list[str] = field(default_factory=lambda: ["validate", "dedup", "decontaminate", "balance"])
    """The filters to apply, in this order: names from filtering/steps/ (one module each; checked there, by the
    filter stage and `medaug check-params`): validate, dedup, decontaminate, judge, consistency, fidelity (does a
    rewrite ask what its parent asked?), balance. `decontaminate` cannot be left out: a generated item derived
    from or overlapping the test set would make every score meaningless."""
    min_question_chars: int = 12
    max_question_chars: int = 500
    dedup: DedupParams = field(default_factory=DedupParams)
    decontaminate: DecontaminateParams = field(default_factory=DecontaminateParams)
    judge: JudgeParams = field(default_factory=JudgeParams)
    balance: BalanceParams = field(default_factory=BalanceParams)
    teacher: dict[str, Any] = field(default_factory=dict)
    """The judge, consistency and fidelity steps: `teacher` keys that differ for them, e.g. {backend: openai, model: gpt-4o},
    so that a model other than the generator judges its items (KAILIN's self-evaluation, any judge study); empty:
    the generation teacher judges. The funnel (`teacher.model`) and the data cards name it."""

    def check(self, key: str) -> None:
        if "decontaminate" not in self.steps:
            raise MedaugError(f"params.yaml: {key}.steps must include decontaminate (test-set decontamination "
                              f"is never optional)")
        if len(set(self.steps)) != len(self.steps):
            raise MedaugError(f"params.yaml: {key}.steps lists a step twice ({self.steps})")
        if self.min_question_chars > self.max_question_chars:
            raise MedaugError(f"params.yaml: {key}.min_question_chars must be <= {key}.max_question_chars (got "
                              f"{self.min_question_chars} > {self.max_question_chars}: validate would drop every item)")


@dataclass
class LoraParams(_Traced):
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"

    def check(self, key: str) -> None:
        if self.r < 1 or self.alpha < 1:
            raise MedaugError(f"params.yaml: {key}.r and {key}.alpha must be >= 1 (got {self.r}, {self.alpha})")
        if not 0 <= self.dropout < 1:
            raise MedaugError(f"params.yaml: {key}.dropout must be in [0, 1) (got {self.dropout})")


@dataclass
class VariantParams(_Traced):
    """A training-set recipe (`variants.<name>`): the train split, plus the generated items `filter` kept that
    match every key. data/train/<name>.jsonl is built by the stage `dataset@<name>`."""
    strategies: list[str] = field(default_factory=list)
    """The strategies whose kept items are added ([] = the train split only)."""
    teachers: list[str] = field(default_factory=list)
    """Keep items written by these teacher models (as records name them, `teacher.model`); [] = every teacher."""
    min_judge_score: float | None = None
    """Keep items the judge scored at least this (`scores.judge`; unscored items go). Needs `judge` in
    filter.steps; the scores are on the records, so changing it asks the judge nothing."""
    fraction: float = 1.0
    """A seeded subsample of the selected items, in (0, 1] (size curves)."""
    max_items: int = 0
    """At most this many selected items after `fraction` (0 = no cap)."""
    seed: int = 0
    """The subsample's seed (the same subset for every training seed)."""
    rationale: float = 0.0
    """Weight of a second training target (Distilling step-by-step): the item's explanation (`long_answer`:
    PubMedQA's, or the teacher's for generated items) after train.rationale_template. The answer loss stays as it
    is; 0 = off. Scoring is unchanged."""
    rounds: int = 0
    """Error-driven rounds (LLM2LLM, docs/rounds.md): 0 = an ordinary recipe. With N >= 1, list the recipe in
    train.rounds (not train.variants): round 0 is the `original` candidate of the same model and seed, and each
    round k = 1..N scores round k-1's student on the train split (`probe-r<k>`), asks the teacher for new items
    from the parents `pick` chooses with this recipe's `strategies`, filters them with filter.steps and trains
    on everything so far (`teach-r<k>`, `train-r<k>`; candidate <model>-<recipe>-r<k>-<seed>). Parents are
    original items only. `medaug rounds --write` writes the round stages into dvc.yaml."""
    per_round: int = 24
    """Rounds: at most this many parents a round (each asked once per strategy)."""
    pick: Literal["errors", "margin", "random"] = "errors"
    """Rounds: the parents. `errors`: the train items the student got wrong (most confidently wrong first);
    `margin`: the lowest log-prob margin of the gold answer over the best other one (the wrong ones, then the
    unsure right ones); `random`: a seeded sample whatever the student answered, the equal-budget control."""

    def check(self, key: str) -> None:
        if not 0 <= self.rationale < 100:
            raise MedaugError(f"params.yaml: {key}.rationale must be in [0, 100) (got {self.rationale})")
        if not 0 < self.fraction <= 1:
            raise MedaugError(f"params.yaml: {key}.fraction must be in (0, 1] (got {self.fraction})")
        if self.max_items < 0:
            raise MedaugError(f"params.yaml: {key}.max_items must be >= 0 (0 = no cap; got {self.max_items})")
        if self.rounds < 0 or self.per_round < 1:
            raise MedaugError(f"params.yaml: {key}: rounds must be >= 0 and per_round >= 1 (got rounds "
                              f"{self.rounds}, per_round {self.per_round})")
        if self.rounds and not self.strategies:
            raise MedaugError(f"params.yaml: {key} has rounds but no strategies: a round asks the teacher with "
                              f"them, e.g. `strategies: [rewrite, new]`")
        if self.rounds and (self.teachers or self.min_judge_score is not None or self.fraction != 1
                            or self.max_items or self.rationale):
            raise MedaugError(f"params.yaml: {key} has rounds: its items are each round's own, so teachers, "
                              f"min_judge_score, fraction, max_items and rationale do not apply: remove them")
        if not self.strategies and (self.teachers or self.min_judge_score is not None or self.fraction != 1
                                    or self.max_items):
            raise MedaugError(f"params.yaml: {key} selects generated items (teachers, min_judge_score, fraction "
                              f"or max_items) but lists no strategies: add `strategies: [rewrite, new]`")


@dataclass
class TrainParams(_Traced):
    models: list[str] = field(default_factory=lambda: ["gemma270m"])
    """Short names (keys of the top-level `models` section); DVC's matrix runs one train stage per pair."""
    variants: list[str] = field(default_factory=lambda: ["original", "augmented"])
    """Keys of the top-level `variants` (recipes): one training set data/train/<variant>.jsonl each. Models
    listed in `pretrain.models` also get `dapt-<variant>`."""
    rounds: list[str] = field(default_factory=list)
    """Recipes with `rounds` >= 1 (keys of `variants`, all with the same `rounds`) to run round by round, from the
    `original` candidate of each model and seed (which train.variants must list): candidates
    <model>-<recipe>-r<k>-<seed>. dvc.yaml's round stages take this list as their matrix, so setting it (also with
    `dvc exp run -S`) is all it takes when the recipes' `rounds` is what dvc.yaml has stages for (the shipped
    recipes' 2); another number of rounds: `medaug rounds --write` first."""
    launcher: str = "python"
    """The command dvc.yaml runs the train and pretrain stage scripts with: `python` (one process), or
    `torchrun --nproc_per_node 4` / `accelerate launch --multi_gpu --num_processes 4` (DDP; on CPU too, over gloo),
    `accelerate launch --use_fsdp --num_processes 4` (FSDP: GPUs only). The stage refuses a launch that would
    train otherwise than asked (train.loop.check_launch). Changing it changes the stage command, so DVC reruns
    training."""
    method: Literal["lora", "full"] = "lora"
    """`lora`: the DVC output is the adapter (merged only for registration); `full`: every weight is trained
    and the output is the whole model."""
    epochs: float = 2.0
    max_steps: int = -1
    """> 0 overrides epochs."""
    batch_size: int = 4
    """Per device (per process under torchrun / accelerate launch)."""
    grad_accum: int = 1
    learning_rate: float = 2.0e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    seeds: list[int] = field(default_factory=lambda: [0])
    """Each candidate is trained once per seed (stage train@<model>-<variant>-<seed>, candidate
    <model>-<variant>-<seed>). A seed fixes the data order, dropout and LoRA init: the same params give the same
    adapter on CPU. Comparisons between variants use the mean over seeds (`medaug report`, reports/variants.json);
    adding a seed trains only the new one."""
    eval_steps: int = 0
    """Score the dev split every this many optimizer steps (0 = once per epoch) and at the end; each evaluation
    is a checkpoint, and the best one (by `best_metric`) is the stage's output."""
    best_metric: Literal["accuracy", "macro_f1", "loss"] = "accuracy"
    """Dev metric that picks the checkpoint kept (a tie keeps the earlier one)."""
    checkpoints: str = ".cache/checkpoints"
    """Where checkpoints live while a stage runs (outside DVC outputs, which DVC deletes before a run): a killed
    run resumes from its last checkpoint when rerun with the same data and params; removed once it succeeds."""
    group_by_length: bool = False
    """Batch examples of similar length together (less padding; the order stays seeded)."""
    packing: bool = False
    """Concatenate each batch into one row with per-example positions and attention (no padding at all)."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bf16 on a GPU that supports it, else fp32 (always fp32 on CPU)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory for long sequences, about 30% slower."""
    lora: LoraParams = field(default_factory=LoraParams)
    rationale_template: str = "Abstract: {context}\nQuestion: {question}\nExplain the answer:"
    """The prompt of the rationale target (a variant's `rationale` > 0); the explanation follows it."""
    rationale_max_tokens: int = 128
    """Explanation tokens beyond this are cut (from the end)."""

    def check(self, key: str) -> None:
        for name in ("{context}", "{question}"):
            if name not in self.rationale_template:
                raise MedaugError(f"params.yaml: {key}.rationale_template must contain {name}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise MedaugError(f"params.yaml: {key}.seeds must be distinct integers >= 0, at least one (got "
                              f"{self.seeds})")
        if self.rationale_max_tokens < 1:
            raise MedaugError(f"params.yaml: {key}.rationale_max_tokens must be >= 1")
        if self.learning_rate <= 0:
            raise MedaugError(f"params.yaml: {key}.learning_rate must be > 0 (got {self.learning_rate})")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise MedaugError(f"params.yaml: {key}.batch_size and {key}.grad_accum must be >= 1")
        if not 0 <= self.warmup_ratio < 1:
            raise MedaugError(f"params.yaml: {key}.warmup_ratio must be in [0, 1) (got {self.warmup_ratio})")
        if self.eval_steps < 0:
            raise MedaugError(f"params.yaml: {key}.eval_steps must be >= 0 (got {self.eval_steps})")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise MedaugError(f"params.yaml: {key}: set epochs > 0 or max_steps > 0")


@dataclass
class PretrainParams(_Traced):
    """Continued pretraining (domain-adaptive, as in MQG): next-token loss on a text corpus; the result is the
    base of the `dapt-<variant>` candidates. Batch size, method, LoRA and precision come from `train`."""
    models: list[str] = field(default_factory=list)
    """Short names to pretrain ([] = no pretrain stage, no dapt candidates)."""
    variants: list[str] = field(default_factory=lambda: ["original", "augmented"])
    """The training sets (of train.variants) the `dapt-<variant>` candidates train on."""
    corpus: str = "data/prepared/train.jsonl"
    """A .txt/.md/.jsonl file or a folder of them (a dvc.yaml dep). JSONL lines give their `text`, or their
    `contexts` (QA records), so the default is the abstracts of the training split (never test)."""
    block_size: int = 256
    """Tokens per training row; the corpus is concatenated (EOS between documents) and cut into blocks."""
    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 1.0e-4
    seed: int = 0
    """Of the LoRA init and data order (one continued-pretraining run per model, whatever train.seeds)."""

    def check(self, key: str) -> None:
        if self.block_size < 8:
            raise MedaugError(f"params.yaml: {key}.block_size must be >= 8 (got {self.block_size})")
        if self.learning_rate <= 0:
            raise MedaugError(f"params.yaml: {key}.learning_rate must be > 0 (got {self.learning_rate})")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise MedaugError(f"params.yaml: {key}: set epochs > 0 or max_steps > 0")


@dataclass
class EvaluateParams(_Traced):
    batch_size: int = 8
    bootstrap: int = 1000
    """Resamples of the test split for the 95% confidence intervals of accuracy and macro-F1 (0 = none)."""
    seed: int = 0
    """Seed of the bootstrap resamples: the same predictions give the same intervals."""
    ci_method: Literal["bca", "percentile"] = "bca"
    """Bootstrap interval (scipy.stats.bootstrap) of accuracy, macro-F1 and Δ accuracy: `bca` (bias-corrected and
    accelerated; percentile where it is undefined, e.g. all predictions right) or `percentile`. Not the recipes
    table's two-level bootstrap over items and seeds, which is percentile."""
    teacher_shots: int = 3
    """evaluate-teacher: worked examples from the training split in each prompt (k-shot; 0 = zero-shot)."""
    teacher: dict[str, Any] = field(default_factory=dict)
    """evaluate-teacher: `teacher` keys that differ for the baseline, e.g. {backend: openai, model: gpt-4o}."""

    def check(self, key: str) -> None:
        if self.bootstrap < 0 or self.teacher_shots < 0:
            raise MedaugError(f"params.yaml: {key}.bootstrap and {key}.teacher_shots must be >= 0")


@dataclass
class RegisterParams(_Traced):
    model_name: str = "medaug-pubmedqa"
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    policy: Literal["higher", "mcnemar"] = "higher"
    """When the winner takes `champion` from the current one (scored on the same test data): `higher`: its
    `metric` is strictly higher; `mcnemar`: higher and the paired McNemar test of their predictions gives
    p < `alpha`. Otherwise it is registered as `challenger`."""
    alpha: float = 0.05

    def check(self, key: str) -> None:
        if not 0 < self.alpha < 1:
            raise MedaugError(f"params.yaml: {key}.alpha must be in (0, 1) (got {self.alpha})")


@dataclass
class CpuParams(_Traced):
    """The CPU kernels of the training and scoring stages (train, train-dapt, pretrain, evaluate, evaluate-dapt,
    zero-shot): medaug.cpu."""
    isa: Literal["avx2", "native"] = "avx2"
    """avx2: cap torch's, oneDNN's and MKL's kernels at AVX2, so AVX-512 and AVX2-only x86 CPUs give the same
    bytes (adapters, curves, scores); native: each CPU's fastest kernels (the environment decides). Non-x86 CPUs
    and GPUs are not affected."""


@dataclass
class Params(_Traced):
    data: DataParams = field(default_factory=DataParams)
    models: dict[str, str] = field(default_factory=lambda: {"gemma270m": "gemma-3-270m"})
    """Short name -> model reference: an HF hub id, a local directory, `gemma-3-270m` (the PyPI-packaged GGUF)
    or `tiny-llama` / `tiny-gpt2` (tiny random models for tests)."""
    task: TaskParams = field(default_factory=TaskParams)
    variants: dict[str, VariantParams] = field(default_factory=lambda: {
        "original": VariantParams(), "augmented": VariantParams(strategies=["rewrite", "new"])})
    """Training-set recipes by name; train.variants picks the ones to train."""
    teacher: TeacherParams = field(default_factory=TeacherParams)
    generate: GenerateParams = field(default_factory=GenerateParams)
    filter: FilterParams = field(default_factory=FilterParams)
    pretrain: PretrainParams = field(default_factory=PretrainParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    register: RegisterParams = field(default_factory=RegisterParams)
    cpu: CpuParams = field(default_factory=CpuParams)

    def check(self, key: str) -> None:
        # which strategies serve the task, and their names: augment.strategies.check (generate, check-params)
        if self.task.answer == "options" and self.generate.label_mix:
            raise MedaugError(f"params.yaml: generate.label_mix is for label tasks; task {self.task.name} is "
                              f"multiple choice (rewrite reorders the options itself, and filter.balance caps "
                              f"a letter's share): remove generate.label_mix")
        for label in self.generate.label_mix:
            if label not in self.task.choices:
                raise MedaugError(f"params.yaml: generate.label_mix has unknown label {label!r} (allowed: "
                                  f"{', '.join(self.task.choices)}, the task's choices; a YAML 1.1 reader turns "
                                  f"bare yes/no into booleans: quote them)")
        for strategy in self.generate.teachers:
            self.teachers_for(strategy)  # a bad key or value fails now, with its path
        self.baseline_teacher()
        for i, name in enumerate(self.train.variants):
            if name not in self.variants:
                raise MedaugError(f"params.yaml: train.variants[{i}] = {name!r} is no key of `variants` (known: "
                                  f"{', '.join(self.variants) or 'none'}); add its recipe there")
            if Candidate.is_dapt(name) or name == ZERO_SHOT or not name.strip() or "/" in name:
                raise MedaugError(f"params.yaml: train.variants[{i}] = {name!r}: a variant name may not be empty, "
                                  f"contain '/', start with 'dapt-' or be 'zero-shot' (stage names use them)")
            if self.variants[name].strategies and not self.generate.strategies:
                raise MedaugError(f"params.yaml: generate.strategies is empty, so train.variants' {name!r} (which "
                                  f"adds {', '.join(self.variants[name].strategies)} items) would be the train split "
                                  f"again: list a strategy or drop {name!r}")
            # a recipe naming strategies that generate does not run selects nothing: dataset@<name> says so
            if self.variants[name].rounds:
                raise MedaugError(f"params.yaml: train.variants[{i}] = {name!r} has rounds: list it in train.rounds "
                                  f"instead (its round 0 is the `original` candidate)")
        for name in self.variants:
            if ROUND.search(name):
                raise MedaugError(f"params.yaml: variants.{name}: a recipe name may not end in -r<number> (round "
                                  f"candidates are named <model>-<recipe>-r<k>-<seed>)")
        for i, name in enumerate(self.train.rounds):
            recipe = self.variants.get(name)
            if recipe is None or not recipe.rounds:
                raise MedaugError(f"params.yaml: train.rounds[{i}] = {name!r} is no recipe of `variants` with "
                                  f"rounds >= 1 (add e.g. `{name}: {{strategies: [rewrite, new], rounds: 2, "
                                  f"per_round: 24, pick: errors}}`)")
            if BASELINE not in self.train.variants:
                raise MedaugError(f"params.yaml: train.rounds lists {name!r}, whose round 0 is the {BASELINE!r} "
                                  f"candidate: add {BASELINE!r} to train.variants")
            if "/" in name or not name.strip():
                raise MedaugError(f"params.yaml: train.rounds[{i}] = {name!r}: not a name stages can use")
        if len(set(self.train.rounds)) != len(self.train.rounds):
            raise MedaugError(f"params.yaml: train.rounds lists a recipe twice ({self.train.rounds})")
        depths = {name: self.variants[name].rounds for name in self.train.rounds}
        if len(set(depths.values())) > 1:
            raise MedaugError(f"params.yaml: the recipes in train.rounds have different rounds ({depths}); they run "
                              f"in the same round stages (and a control compares round by round): give them the same")
        for name, ref in self.models.items():
            if not name.strip():
                raise MedaugError(f"params.yaml: models has an empty short name (for {ref!r}); stage names are "
                                  f"built from it, e.g. gemma270m: gemma-3-270m")
            if not ref.strip():
                raise MedaugError(f"params.yaml: models.{name} is empty (allowed: an HF hub id, a local directory, "
                                  f"gemma-3-270m, tiny-llama or tiny-gpt2)")
        for section, names in (("train", self.train.models), ("pretrain", self.pretrain.models)):
            for i, name in enumerate(names):
                if not name.strip():
                    raise MedaugError(f"params.yaml: {section}.models[{i}] is an empty name (use a key of "
                                      f"`models`: {', '.join(self.models) or 'none'})")
                if name not in self.models:
                    raise MedaugError(f"params.yaml: {section}.models names {name!r}, which is not a key of "
                                      f"`models` (known: {', '.join(self.models) or 'none'})")
        for i, name in enumerate(self.pretrain.variants if self.pretrain.models else []):
            if name not in self.train.variants:
                raise MedaugError(f"params.yaml: pretrain.variants[{i}] = {name!r} is not in train.variants "
                                  f"({', '.join(self.train.variants)}): its training set is built only for those")
        for name in self.pretrain.models:
            if name not in self.train.models:  # its dapt candidates are compared with zero-shot@<name>
                raise MedaugError(f"params.yaml: pretrain.models names {name!r}, which is not in train.models "
                                  f"(add it there: its dapt candidates are tested against its zero-shot baseline)")

    def candidates(self) -> list[Candidate]:
        """(model, variant, seed) of every trained candidate: train.models x train.variants x train.seeds, the
        rounds of train.rounds (variant <recipe>-r<k>), then dapt-<variant> for the models in pretrain.models (DVC's train and train-dapt matrices)."""
        return ([Candidate(m, v, s) for m in self.train.models for v in self.train.variants
                 for s in self.train.seeds]
                + [Candidate.of_round(m, r, k, s) for m in self.train.models for r in self.train.rounds
                   for k in range(1, self.variants[r].rounds + 1) for s in self.train.seeds]
                + [Candidate.dapt(m, v, s) for m in self.pretrain.models for v in self.pretrain.variants
                   for s in self.train.seeds])

    def teachers_for(self, strategy: str) -> list[TeacherParams]:
        """The teachers a generation strategy asks: `teacher`, with each of its `generate.teachers` overrides."""
        overrides = self.generate.overrides(strategy)
        listed = isinstance(self.generate.teachers.get(strategy), list)
        out = [_build(TeacherParams, {**dataclasses.asdict(self.teacher), **o},
                      f"generate.teachers.{strategy}" + (f"[{i}]" if listed else "")) if o else self.teacher
               for i, o in enumerate(overrides)]
        models = [tp.model for tp in out]
        if len(set(models)) != len(models):
            raise MedaugError(f"params.yaml: generate.teachers.{strategy} lists the model "
                              f"{max(models, key=models.count)!r} twice; records and recipes tell teachers apart "
                              f"by `model`, so each teacher of one strategy needs its own")
        return out

    def teacher_for(self, strategy: str, model: str = "") -> TeacherParams:
        """The strategy's teacher whose model is `model` ("" = its first, the only one unless it lists several)."""
        tps = self.teachers_for(strategy)
        return next((tp for tp in tps if tp.model == model), tps[0]) if model else tps[0]

    def filter_teacher(self) -> TeacherParams:
        """The teacher of the judge, consistency and fidelity steps: `teacher`, with the keys of `filter.teacher`."""
        if not self.filter.teacher:
            return self.teacher
        return _build(TeacherParams, {**dataclasses.asdict(self.teacher), **self.filter.teacher}, "filter.teacher")

    def baseline_teacher(self) -> TeacherParams:
        """The teacher of the evaluate-teacher baseline: `teacher`, with the keys of `evaluate.teacher`."""
        if not self.evaluate.teacher:
            return self.teacher
        return _build(TeacherParams, {**dataclasses.asdict(self.teacher), **self.evaluate.teacher},
                      "evaluate.teacher")

    def model_ref(self, short_name: str) -> str:
        if short_name not in self.models:
            raise MedaugError(f"params.yaml: no model {short_name!r} under `models` (known: {', '.join(self.models)})")
        return self.models[short_name]


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # built already (task: from its file)
            return value
        if not isinstance(value, dict):
            raise MedaugError(f"params.yaml: {key} must be a mapping, got {value!r}")
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            try:
                return _convert(value, arg, key)
            except MedaugError as e:
                errors.append(str(e))
        quote = "; YAML read a number: quote it to keep it text" if str in typing.get_args(tp) and \
            isinstance(value, int | float) and not isinstance(value, bool) else ""
        raise MedaugError(f"params.yaml: {key} = {value!r} is not valid (allowed: "
                          f"{' or '.join(_describe(a) for a in typing.get_args(tp))}){quote}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise MedaugError(f"params.yaml: {key} = {value!r} is not allowed (allowed: "
                              f"{', '.join(map(str, allowed))})")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise MedaugError(f"params.yaml: {key} must be a list, got {value!r}")
        (arg,) = typing.get_args(tp)
        return [_convert(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise MedaugError(f"params.yaml: {key} must be a mapping, got {value!r}")
        _, varg = typing.get_args(tp)
        return {str(k): _convert(v, varg, f"{key}.{k}") for k, v in value.items()}
    if tp is type(None):
        if value is not None:
            raise MedaugError(f"params.yaml: {key} must be null")
        return None
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        raise MedaugError(f"params.yaml: {key} = {value!r} must be a finite number")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            hint = " (YAML reads bare yes/no/on/off as booleans: quote it)" if isinstance(value, bool) else ""
            raise MedaugError(f"params.yaml: {key} = {value!r} must be {tp.__name__}{hint}")
        return value
    return value


def _build(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for k in raw:
        if k not in names:
            where = f"{prefix}.{k}" if prefix else k
            raise MedaugError(f"params.yaml: unknown key '{where}' (known keys here: {', '.join(names)})")
    kwargs = {k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in raw.items()}
    obj = cls(**kwargs)
    if hasattr(obj, "check"):
        obj.check(prefix or "params")
    return obj


def read_yaml(path: Path) -> Any:
    """YAML 1.2 (ruamel), exactly as DVC reads params: `yes` stays a string, `1e-4` is a float."""
    try:
        return YAML(typ="safe", pure=True).load(decode_utf8(path.read_bytes(), str(path)))
    except YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise MedaugError(f"{path}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None


def _task_section(raw: Any, root: Path) -> Any:
    """params.yaml's `task:` merged with the task file it names; the file's keys may not be set in params.yaml."""
    if not isinstance(raw, dict) or not raw.get("file"):
        return raw
    for k in raw:
        if k in TASK_FILE_KEYS:
            raise MedaugError(f"params.yaml: task.{k} comes from the task file ({raw['file']}); edit that file, "
                              f"or copy it and point task.file at the copy")
    path = Path(raw["file"]) if Path(raw["file"]).is_absolute() else root / raw["file"]
    if not path.is_file():
        raise MedaugError(f"params.yaml: task.file = {raw['file']!r}: file not found (shipped tasks: "
                          f"src/medaug/tasks/pubmedqa.yaml, medqa.yaml, medmcqa.yaml, progressive.yaml)")
    spec = read_yaml(path)
    if not isinstance(spec, dict):
        raise MedaugError(f"{raw['file']}: a task file is a mapping of {', '.join(TASK_FILE_KEYS)}")
    for k in spec:
        if k not in TASK_FILE_KEYS:
            raise MedaugError(f"{raw['file']}: unknown key {k!r} (a task file has: {', '.join(TASK_FILE_KEYS)}; "
                              f"max_seq_len and format go in params.yaml's task:)")
    try:
        return _build(TaskParams, {**spec, **raw}, "task")
    except MedaugError as e:  # name the file a bad value came from
        raise MedaugError(f"{raw['file']} (task.file): {str(e).removeprefix('params.yaml: ')}") from None


def parse_params(raw: dict[str, Any] | None, root: str | Path = ".") -> Params:
    """Params from params.yaml's content; `root` (the project root) resolves task.file."""
    raw = dict(raw or {})
    if "task" in raw:
        raw["task"] = _task_section(raw["task"], Path(root))
    return _build(Params, raw)


def rekeyed(p: Params) -> Params:
    """A copy of loaded params made with dataclasses.replace, its reads recorded like the original's (while
    tracing; else `p` as it is)."""
    return _keyed(p, "") if tracing() else p


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise MedaugError(f"{path}: file not found (run from the project root, where params.yaml is)")
    raw = read_yaml(path)
    if raw is not None and not isinstance(raw, dict):
        raise MedaugError(f"{path}: top level must be a mapping of sections")
    p = parse_params(raw, path.parent)
    if tracing():
        global _reads, _loaded
        p = _loaded = _keyed(p, "")
        _reads = set() if _reads is None else _reads  # a stage that loads twice (cpu.cap_kernels, then its run)
    return p
