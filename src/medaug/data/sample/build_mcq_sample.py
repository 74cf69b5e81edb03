"""Build the SYNTHETIC multiple-choice samples (see README.md in this folder): medqa/{train,test}.jsonl and
medmcqa/{train,validation}.jsonl, in the hub schemas of MedQA and MedMCQA (see medaug.data.mcq).

Deterministic (seeded); re-run with `python src/medaug/data/sample/build_mcq_sample.py` and commit the files.
Every item is about an invented world (creatures, planets, units) and is NOT medical knowledge. Each answer follows
from the stem by one fixed rule per kind of question, so a model can learn them:
- habitat: fur colour -> homeland (eyes and age do not matter);
- feeding: the creature's call -> feeding time (tail rings do not matter);
- units: 1 flim = k zabs, so a flims + b zabs = a*k + b zabs;
- travel: departure day + days of travel = arrival day.
In every file the correct letter is exactly balanced over A-D, the four kinds of question are equally frequent,
and no question occurs twice (in any file of one dataset).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 31337
HERE = Path(__file__).parent
FILES = {"medqa": {"train": 120, "test": 40}, "medmcqa": {"train": 120, "validation": 40}}
LETTERS = "ABCD"

CREATURES = ["glorp", "vexil", "thrumble", "snibbet", "quorl", "mimbleback"]
NAMES = ["Zub", "Ploo", "Kestrix", "Varnie", "Oomth", "Brisk", "Tallow", "Quib", "Mernie", "Fennix", "Drozz", "Yull"]
PLANETS = ["Zentar", "Vellomar", "Quorrath", "Drimble", "Ombra", "Pexis"]
HABITATS = {"blue": "the ice caverns of Zentar", "crimson": "the lava fields of Vellomar",
            "amber": "the floating marshes of Quorrath", "silver": "the crystal forests of Drimble"}
CALLS = {"hums": "at first dawn", "clicks": "at high noon", "whistles": "at dusk", "rattles": "under the second moon"}
GOODS = ["a jar of moon-salt", "a coil of sky-rope", "a basket of glowfruit", "a bolt of woven fog", "a lantern"]


def habitat(rng: random.Random) -> tuple[str, str, list[str], str]:
    colour, home = rng.choice(list(HABITATS.items()))
    name, creature = rng.choice(NAMES), rng.choice(CREATURES)
    q = (f"{name} is a {creature} with {colour} fur and {rng.randint(2, 9)} eyes, "
         f"{rng.randint(3, 60)} zorbs old. Which homeland does {name} come from?")
    exp = f"Creatures with {colour} fur always come from {home}; eyes and age do not matter."
    return q, home, [h for h in HABITATS.values() if h != home], exp


def feeding(rng: random.Random) -> tuple[str, str, list[str], str]:
    call, time = rng.choice(list(CALLS.items()))
    creature, keeper, planet = rng.choice(CREATURES), rng.choice(NAMES), rng.choice(PLANETS)
    q = (f"A {creature} kept by {keeper} on {planet} has {rng.randint(1, 12)} tail rings and {call} when "
         f"approached. When does it feed?")
    exp = f"Every creature that {call} feeds {time}; tail rings and planet do not matter."
    return q, f"It feeds {time}", [f"It feeds {t}" for t in CALLS.values() if t != time], exp


def units(rng: random.Random) -> tuple[str, str, list[str], str]:
    while True:  # typical slips: no conversion, no zabs, zabs converted too, one flim too few or too many
        k, a, b = rng.randint(3, 9), rng.randint(2, 9), rng.randint(1, 9)
        wrong = {a + b, a * k, (a + b) * k, (a - 1) * k + b, (a + 1) * k + b} - {a * k + b}
        if len(wrong) >= 3:
            break
    q = (f"On {rng.choice(PLANETS)}, 1 flim is worth {k} zabs. {rng.choice(NAMES)} pays {a} flims and {b} zabs "
         f"for {rng.choice(GOODS)}. How many zabs is that in all?")
    exp = f"{a} flims x {k} zabs per flim = {a * k} zabs, plus {b} zabs = {a * k + b} zabs."
    return q, f"{a * k + b} zabs", [f"{w} zabs" for w in rng.sample(sorted(wrong), 3)], exp


def travel(rng: random.Random) -> tuple[str, str, list[str], str]:
    src, dst = rng.sample(PLANETS, 2)
    day, days = rng.randint(1, 30), rng.randint(2, 19)
    q = (f"A skyship leaves {src} on day {day} of the long cycle, and the trip to {dst} takes {days} days. "
         f"On which day of the cycle does it land?")
    exp = f"It lands on day {day} + {days} = {day + days}."
    return q, f"Day {day + days}", [f"Day {day + days + d}" for d in rng.sample([-3, -2, -1, 1, 2, 3], 3)], exp


KINDS = {"habitat": (habitat, "Invented zoology"), "feeding": (feeding, "Invented zoology"),
         "units": (units, "Invented arithmetic"), "travel": (travel, "Invented arithmetic")}


def items(rng: random.Random, n: int, seen: set[str]) -> list[dict]:
    """n items: kinds equally frequent, the correct letter exactly balanced, questions new to `seen`."""
    kinds = [k for k in KINDS for _ in range(n // len(KINDS))]
    letters = [x for x in LETTERS for _ in range(n // len(LETTERS))]
    rng.shuffle(kinds)
    rng.shuffle(letters)
    out = []
    for kind, letter in zip(kinds, letters):
        make, subject = KINDS[kind]
        while True:
            q, right, wrong, exp = make(rng)
            if q not in seen:
                break
        seen.add(q)
        rng.shuffle(wrong)
        wrong.insert(LETTERS.index(letter), right)
        out.append({"question": q, "options": dict(zip(LETTERS, wrong)), "letter": letter, "exp": exp,
                    "kind": kind, "subject": subject})
    return out


def medqa_row(it: dict) -> dict:
    return {"question": it["question"], "answer": it["options"][it["letter"]], "options": it["options"],
            "meta_info": "synthetic", "answer_idx": it["letter"], "metamap_phrases": it["question"].split(", ")}


def medmcqa_row(it: dict, rng: random.Random) -> dict:
    h = f"{rng.getrandbits(128):032x}"
    return {"id": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}", "question": it["question"],
            **{f"op{x.lower()}": it["options"][x] for x in LETTERS}, "cop": LETTERS.index(it["letter"]),
            "choice_type": "single", "exp": it["exp"], "subject_name": it["subject"], "topic_name": it["kind"]}


def build(seed: int = SEED) -> dict[Path, list[dict]]:
    rng = random.Random(seed)
    files = {}
    for dataset, splits in FILES.items():
        seen: set[str] = set()
        for split, n in splits.items():
            its = items(rng, n, seen)
            files[HERE / dataset / f"{split}.jsonl"] = [
                medqa_row(it) if dataset == "medqa" else medmcqa_row(it, rng) for it in its]
    return files


if __name__ == "__main__":
    for path, rows in build().items():
        path.parent.mkdir(exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"wrote {path} ({len(rows)} rows, {path.stat().st_size // 1024} KB)")
