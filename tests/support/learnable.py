"""Records a tiny model learns in a few steps: the label is given away by one word of the question."""

from medaug.data.schema import Record

CUE = {"yes": "improved", "no": "worsened", "maybe": "varied"}


def learnable(n, start=0):
    """The label is given away by one word of the question: a tiny model can learn it in a few steps."""
    labels = ["yes", "no", "maybe"]
    return [Record(id=f"t{i}", question=f"Did outcome {i} improve? It {CUE[labels[i % 3]]}.",
                   contexts=[f"We followed {10 + i} patients for a year."],
                   final_decision=labels[i % 3]) for i in range(start, start + n)]
