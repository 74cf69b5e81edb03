"""A label task that is not PubMedQA's: claims about abstracts answered `true` or `false`, in PubMedQA's file format
(with its task file and a small corpus), and a teacher that follows medaug's generic label prompts."""

import json
import re
from pathlib import Path

TASK = """name: truefalse
description: claims about abstracts, true or false
loader: pubmedqa
split: {kind: pubmedqa}
answer: labels
choices: ["true", "false"]
template: "Abstract: {context}\\nClaim: {question}\\nAnswer:"
"""


def write_source(root: Path, n: int = 40) -> None:
    """n PubMedQA-format records (ori_pqal.json's keys), half `true` and half `false`, each with its MeSH headings;
    the task file beside them."""
    items = {str(5000 + i): {"QUESTION": f"Claim {i}: drug {i} lowers marker {i % 5}?",
                             "CONTEXTS": [f"We gave drug {i} to {20 + i} adults.", f"Marker {i % 5} fell by {i}%."],
                             "LABELS": ["METHODS", "RESULTS"], "MESHES": ["Humans", f"Drug {i % 7}"],
                             "LONG_ANSWER": f"Drug {i} changed marker {i % 5}.",
                             "final_decision": "true" if i % 2 else "false"} for i in range(n)}
    (root / "source.json").write_text(json.dumps(items))
    (root / "truefalse.yaml").write_text(TASK)
    (root / "corpus").mkdir()
    (root / "corpus/notes.txt").write_text(
        "Statins lower LDL cholesterol within weeks of the first dose in most adults.\n\n"
        "Loop diuretics relieve congestion in acute heart failure within hours.\n\n"
        "Whether vitamin D prevents fractures in older adults remains uncertain across trials.\n")


def field(prompt: str, name: str) -> str:
    m = re.search(rf"^{name}:[ \t]*(.*)$", prompt.rsplit("### Task", 1)[-1], re.MULTILINE)
    return m.group(1).strip() if m else ""


def responder(prompt: str) -> str:
    """A teacher that follows the generic label prompts: a rewrite says the claim again, a targeted new item gives
    the label asked for, an untargeted one `true`, except about an uncertain passage, where it says `maybe`."""
    text = field(prompt, "Text") or field(prompt, "Passage")
    if prompt.startswith("Rewrite the question"):
        return json.dumps({"question": f"Put another way, {field(prompt, 'Original question')}"})
    answer = field(prompt, "Answer") if "whose answer is the answer given" in prompt else (
        "maybe" if "uncertain" in text else "true")
    words = re.findall(r"[A-Za-z0-9]+", text)[:6]
    return json.dumps({"question": f"Is it stated that {' '.join(words).lower()}?", "answer": answer,
                       "explanation": text.split(".")[0] + "."})
