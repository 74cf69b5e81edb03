"""Build the SYNTHETIC progressive sample (see README.md in this folder): progressive/{train,test}.jsonl, one case
per line in medaug's progressive schema (see medaug.data.mcq): {case_id, steps: [{reveal, question, options{A..D},
answer}]}, three steps per case, each step revealing more of it (MQG / ECN-QA style).

Deterministic (seeded); re-run with `python src/medaug/data/sample/build_progressive_sample.py` and commit the files.
Every case is about an invented world (creatures brought to a keeper with made-up ailments and remedies) and is NOT
medical knowledge. It is shaped like a clinical case, and each answer follows from what has been revealed so far by
one fixed rule, so a model can learn them:
- step 1 (presentation): the sign -> the ailment (name, fur, age and planet do not matter);
- step 2 (test): the ailment found at step 1 and the colour the star-water turns (gold: mild, black: strong) -> the
  remedy: each ailment has one mild and one strong remedy (the smell of the water does not matter);
- step 3 (outcome): the remedy chosen at step 2 was given; signs cleared -> send it home; signs still there after
  the mild remedy -> give the strong remedy of the ailment; still there after the strong one -> take it to the
  healers of the ailment (the count of new whiskers does not matter).
Step 2 offers both remedies of the ailment and both of one other ailment, so it needs the step-1 answer and the
colour. In every file the correct letter is exactly balanced over A-D at each step position, the four (step-2
colour, step-3 outcome) pairs are equally frequent, every step has four distinct options, no question repeats within
a case, and no case (its step-1 reveal) occurs twice across the two files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 4242
HERE = Path(__file__).parent
FILES = {"train": 40, "test": 12}
LETTERS = "ABCD"

CREATURES = ["glorp", "vexil", "thrumble", "snibbet", "quorl", "mimbleback"]
NAMES = ["Zub", "Ploo", "Kestrix", "Varnie", "Oomth", "Brisk", "Tallow", "Quib", "Mernie", "Fennix", "Drozz", "Yull"]
KEEPERS = ["Keeper Olm", "Keeper Thessaly", "Keeper Rund", "Keeper Ivvo", "Keeper Mabsy"]
PLANETS = ["Zentar", "Vellomar", "Quorrath", "Drimble", "Ombra", "Pexis"]
FURS = ["blue", "crimson", "amber", "silver", "striped"]
SMELLS = ["of pepper", "of rain", "of nothing at all", "faintly of smoke"]
SIGNS = {"its spines droop and have gone soft": "droop-fever", "it sneezes small blue sparks": "spark-sneeze",
         "its scales glow green in the dark": "glimmerpox", "it floats a hand above the ground": "the lightness"}
REMEDIES = {"droop-fever": ("a cup of moon-moss tea", "three drops of thunder-oil"),
            "spark-sneeze": ("a pinch of frost-salt", "a spoon of ash-honey"),
            "glimmerpox": ("a bath in dark-water", "a paste of crushed starbeans"),
            "the lightness": ("a pebble of lead-root", "a night wrapped in iron-fern")}
"""ailment -> (mild remedy, strong remedy)."""
HEALERS = {"droop-fever": "the Grey Tower of Zentar", "spark-sneeze": "the Ember Halls of Vellomar",
           "glimmerpox": "the Shade Wells of Quorrath", "the lightness": "the Deep Caves of Drimble"}
TESTS = {"gold": 0, "black": 1}
"""star-water colour -> which remedy of the ailment (0 mild, 1 strong)."""
HOME = "Send it home: it needs no more remedy"


def give(remedy: str) -> str:
    return f"Give it {remedy}"


def refer(ailment: str) -> str:
    return f"Take it to the healers of {HEALERS[ailment]}"


def place(rng: random.Random, right: str, wrong: list[str], letter: str) -> tuple[dict[str, str], str]:
    """Four options: `right` at `letter`, the three `wrong` texts in a seeded order around it."""
    wrong = list(wrong)
    assert len(wrong) == 3 and len({right, *wrong}) == 4, (right, wrong)
    rng.shuffle(wrong)
    wrong.insert(LETTERS.index(letter), right)
    return dict(zip(LETTERS, wrong)), letter


def case(rng: random.Random, colour: str, cleared: bool, letters: tuple[str, str, str]) -> tuple[str, list[dict]]:
    """(step-1 reveal, the three steps) of one case with the given test colour and outcome."""
    sign, ailment = rng.choice(list(SIGNS.items()))
    name, creature, keeper, planet = (rng.choice(NAMES), rng.choice(CREATURES), rng.choice(KEEPERS),
                                      rng.choice(PLANETS))
    others = [a for a in SIGNS.values() if a != ailment]
    tier = TESTS[colour]

    reveal1 = (f"{name}, a {creature} with {rng.choice(FURS)} fur, {rng.randint(3, 60)} zorbs old, is brought to "
               f"{keeper} on {planet}: {sign}.")
    step1 = (reveal1, f"Which ailment does {name} have?", *place(rng, ailment, others, letters[0]))

    remedy = REMEDIES[ailment][tier]
    decoy = rng.choice(others)  # both remedies of one other ailment: the ailment picks the pair, the colour one of it
    wrong2 = [REMEDIES[ailment][1 - tier], *REMEDIES[decoy]]
    reveal2 = (f"{keeper} drops some of {name}'s spit into a bowl of star-water; the water turns {colour} and smells "
               f"{rng.choice(SMELLS)}.")
    step2 = (reveal2, f"Given the ailment found, which remedy should {keeper} give {name}?",
             *place(rng, remedy, wrong2, letters[1]))

    # the three rule answers for this ailment, and the correct kind of answer for another ailment
    other = rng.choice(others)
    rules = [HOME, give(REMEDIES[ailment][1]), refer(ailment)]
    if cleared:
        right, extra = HOME, refer(other)
    elif tier == 0:
        right, extra = give(REMEDIES[ailment][1]), give(REMEDIES[other][1])
    else:
        right, extra = refer(ailment), refer(other)
    wrong3 = [r for r in rules if r != right] + [extra]
    state = "the signs have cleared" if cleared else "the signs are still there"
    reveal3 = (f"{name} is given the remedy chosen at the last step. After {rng.randint(2, 9)} days {state}, and "
               f"{name} has grown {rng.randint(2, 7)} new whiskers.")
    step3 = (reveal3, f"What should {keeper} do next for {name}?", *place(rng, right, wrong3, letters[2]))

    steps = [{"reveal": r, "question": q, "options": o, "answer": a} for r, q, o, a in (step1, step2, step3)]
    return reveal1, steps


def balanced(rng: random.Random, values: list, n: int) -> list:
    """n values, each as often as n allows (the remainder drawn without repeats), in a seeded order."""
    out = [v for v in values for _ in range(n // len(values))] + rng.sample(values, n % len(values))
    rng.shuffle(out)
    return out


def build(seed: int = SEED) -> dict[Path, list[dict]]:
    rng = random.Random(seed)
    files, seen = {}, set()
    for split, n in FILES.items():
        letters = [balanced(rng, list(LETTERS), n) for _ in range(3)]
        outcomes = balanced(rng, [(colour, cleared) for colour in TESTS for cleared in (True, False)], n)
        rows = []
        for i in range(n):
            while True:
                first, steps = case(rng, *outcomes[i], (letters[0][i], letters[1][i], letters[2][i]))
                if first not in seen:
                    break
            seen.add(first)
            rows.append({"case_id": f"prog-{split}-{i + 1:03d}", "steps": steps})
        files[HERE / "progressive" / f"{split}.jsonl"] = rows
    return files


if __name__ == "__main__":
    for path, rows in build().items():
        path.parent.mkdir(exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"wrote {path} ({len(rows)} cases, {path.stat().st_size // 1024} KB)")
