"""JSON replies: ask for an object with a schema, parse it, validate it, and send it back once for repair.

The caller gives the prompts, the JSON schema of the reply (the small subset of JSON Schema used here: an object
of string properties, some with an `enum`) and a `check` that turns a schema-valid object into the fields it
wants or a reject reason. A reply that is not JSON, breaks the schema or fails the check goes back to the
teacher once with the reason (prompts/repair.txt, `teacher.repair_attempts`); what still fails is returned
with its reason and every raw reply, for the rejects file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medaug.llm.teacher import Request, Teacher

REPAIR = (Path(__file__).parent / "prompts" / "repair.txt").read_text(encoding="utf-8").strip()
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
_PAIR = re.compile(r'"(\w+)"\s*:\s*"((?:[^"\\\n]|\\.)*)"')
_BAD_UNICODE = re.compile("[\ud800-\udfff\ufffd]")  # lone surrogates, and U+FFFD that replaced them

# check(obj) -> the fields to keep, or a reject reason such as "same_question"
Check = Callable[[dict[str, Any]], "dict[str, Any] | str"]
# parse(reply) -> the object in a reply, or why there is none (parse_json, or a more lenient reader)
Parse = Callable[[str], "dict[str, Any] | str"]


def fill(template: str, values: dict[str, str]) -> str:
    """The prompt file with each `{key}` of `values` filled in, in one pass (an item's text is never read as a
    placeholder; other braces, the JSON examples', stay). A line holding `{context}` is left out when the context
    is empty (an exam stem stands alone). rstrip: the prompt ends right after "Reply:", where a base model
    continues."""
    if not values.get("context", "x"):
        template = "".join(line for line in template.splitlines(keepends=True) if "{context}" not in line)
    pattern = re.compile("\\{(" + "|".join(map(re.escape, values)) + ")\\}")
    return pattern.sub(lambda m: values[m.group(1)], template).rstrip()


def string_schema(*required: str, enums: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """An object of required string properties; strict-mode compatible (no extra keys)."""
    props = {k: {"type": "string", **({"enum": (enums or {})[k]} if k in (enums or {}) else {})} for k in required}
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


def parse_json(reply: str) -> dict[str, Any] | str:
    """The first JSON object in the reply (code fences and chatter around it allowed), or a reason.

    An object that never closes (a small model cut at max_new_tokens, or repeating its keys) still yields
    its complete `"key": "string"` pairs, the first of each key: the schema and the check decide the rest."""
    text = _FENCE.sub("", reply.strip())
    start = text.find("{")
    if start < 0:
        return "not_json"
    try:
        obj, _ = json.JSONDecoder().raw_decode(text, start)
    except RecursionError:
        return "malformed_json"  # nested deeper than Python's stack: no reply of ours looks like that
    except ValueError:
        pairs: dict[str, Any] = {}
        for key, value in _PAIR.findall(text[start:]):
            try:
                pairs.setdefault(key, json.loads(f'"{value}"'))
            except ValueError:  # an escape JSON does not know
                pairs.setdefault(key, value)
        return pairs or "malformed_json"
    return obj if isinstance(obj, dict) else "not_json"


def conform(obj: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any] | str:
    """The object's schema properties (strings stripped, enum values as the enum spells them), or the first
    violation (a string with a lone surrogate or a replaced one, U+FFFD, is one: it cannot be written, or was
    garbled)."""
    out = {}
    for key, spec in schema["properties"].items():
        value = obj.get(key)
        if value is None:
            if key in schema.get("required", ()):
                return f"missing_{key}"
            continue
        if not isinstance(value, str):
            return f"bad_type_{key}"
        if _BAD_UNICODE.search(value):
            return f"bad_unicode_{key}"  # a lone surrogate ("\\ud83d") cannot be written as UTF-8
        value = value.strip()
        if "enum" in spec:  # any case: "Yes" is "yes", "b" is "B"
            value = {e.lower(): e for e in spec["enum"]}.get(value.lower())
            if value is None:
                return f"bad_value_{key}"
        out[key] = value
    return out


@dataclass
class JsonReply:
    value: dict[str, Any] | None  # the checked fields, None when rejected or failed
    reason: str | None            # reject reason or "teacher_error"
    replies: list[str] = field(default_factory=list)  # every raw reply, the repaired one last
    request_sha: str = ""
    error: str | None = None      # the teacher's failure, e.g. "http_429", when reason is "teacher_error"
    repaired: bool = False
    cost_usd: float = 0.0         # its requests, first ask and repairs (cache hits: what they cost when paid)


def validate(reply: str, schema: dict[str, Any], check: Check, parse: Parse = parse_json) -> dict[str, Any] | str:
    obj = parse(reply)
    if isinstance(obj, str):
        return obj
    obj = conform(obj, schema)
    return obj if isinstance(obj, str) else check(obj)


def complete_json(teacher: Teacher, prompts: list[str], schemas: list[dict[str, Any]], checks: list[Check],
                  sample_index: int = 0, desc: str = "", parse: Parse = parse_json) -> list[JsonReply]:
    """One JsonReply per prompt, in order: prompt i's reply, read by `parse`, must follow schemas[i] and pass
    checks[i]. All first requests go out together (one progress bar), then all repairs."""
    reqs = [Request.user(p, sample_index, schema) for p, schema in zip(prompts, schemas)]
    out = []
    for c, schema, check in zip(teacher.complete(reqs, desc=desc), schemas, checks):
        if c.text is None:
            out.append(JsonReply(None, "teacher_error", [], c.request_sha, c.error, cost_usd=c.cost_usd))
            continue
        v = validate(c.text, schema, check, parse)
        out.append(JsonReply(v, None, [c.text], c.request_sha, cost_usd=c.cost_usd) if isinstance(v, dict)
                   else JsonReply(None, v, [c.text], c.request_sha, cost_usd=c.cost_usd))
    for _ in range(teacher.tp.repair_attempts):
        todo = [i for i, o in enumerate(out) if o.reason not in (None, "teacher_error")]
        if not todo:
            break
        repairs = [Request(reqs[i].messages + [
            {"role": "assistant", "content": out[i].replies[-1]},
            {"role": "user", "content": REPAIR.format(reason=out[i].reason.replace("_", " "),
                                                      keys=", ".join(schemas[i]["properties"]))}],
            schemas[i], sample_index) for i in todo]
        for i, r, c in zip(todo, repairs, teacher.complete(repairs, desc=f"{desc or 'teacher'} (repairs)")):
            o = out[i]
            o.cost_usd += c.cost_usd
            if c.text is None:
                continue  # the repair request failed: the first reply's reason stands
            o.replies.append(c.text)
            v = validate(c.text, schemas[i], checks[i], parse)
            if isinstance(v, dict):
                o.value, o.reason, o.repaired = v, None, True
            else:
                o.reason = v
            reqs[i] = r
    return out
