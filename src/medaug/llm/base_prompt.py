"""How a base model is prompted, by the local backend and by the openai backend's completions endpoint alike: the
first user message as plain text, a JSON reply prefilled with the opening of its object, and the reply cut where
its item ends (a blank line, the next item's "Key:" line, or the end of the JSON object)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medaug.llm.teacher import Request

_KEY = re.compile(r"^\s*([A-Za-z][\w /-]{0,40}):")


def cut_reply(text: str, last_prompt_line: str = "") -> str | None:
    """The reply up to its first blank line or to the first line whose "Key:" it already used (the model starting
    a next item, as a few-shot prompt invites); None while neither has happened. The prompt's last line
    ("Question:") counts as the reply's first key, though the reply may restate it on its first line."""
    text = text.lstrip()
    m = _KEY.match(last_prompt_line)
    seen = {m.group(1).lower()} if m else set()
    lines = text.split("\n")
    pos = 0
    for i, line in enumerate(lines):
        if not line.strip() and i < len(lines) - 1:
            return text[:pos].rstrip()
        if m := _KEY.match(line):
            if m.group(1).lower() in seen and pos > 0:
                return text[:pos].rstrip()
            seen.add(m.group(1).lower())
        pos += len(line) + 1
    return None


def cut_json(text: str) -> str | None:
    """The reply up to the end of its first complete JSON object; None until that object is complete."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        _, end = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        return None
    return text[:end]


def prefill(r: Request) -> str:
    """The opening of the reply a JSON request gets for free: `{"question": "` for a schema whose first
    property is a string, `{` otherwise, nothing for free text."""
    if r.schema is None:
        return ""
    props = r.schema.get("properties") or {}
    first = next(iter(props), None)
    if first is not None and props[first].get("type") == "string" and "enum" not in props[first]:
        return '{"' + first + '": "'
    return "{"


def prompt_text(r: Request) -> str:
    """What a base model reads: the first user message. A base model cannot follow a repair instruction, so
    a repair conversation becomes a fresh sample of the original prompt (its own seed: another cache key)."""
    return r.messages[0]["content"].rstrip()


def cut(text: str, last_line: str, prefilled: str) -> str | None:
    """The complete reply (with its prefill), or None while it is still going."""
    if not prefilled:
        return cut_reply(text, last_line)
    text = prefilled + text
    done = cut_json(text)
    if done is None:  # the model left the object unfinished: a blank line, or the next item's "Reply:" line
        key = _KEY.match(last_line)
        ends = [text.find("\n\n")] + ([text.find("\n" + key.group(0).strip())] if key else [])
        ends = [e for e in ends if e > 0]
        return text[:min(ends)] if ends else None
    return done
