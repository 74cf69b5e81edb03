"""Train records with a given number of each PubMedQA label (what few-shot prompts pick their shots from)."""

from medaug.data.schema import LABELS, Record


def train_records(n_yes=5, n_no=3, n_maybe=1):
    counts = {"yes": n_yes, "no": n_no, "maybe": n_maybe}
    return [Record(id=f"tr-{label}-{i}", question=f"Train question {label} {i}?", contexts=[f"Train abstract {i}."],
                   final_decision=label) for label in LABELS for i in range(counts[label])]
