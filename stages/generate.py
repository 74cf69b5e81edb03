"""DVC stage `generate`: the teacher writes QA from train records or corpus passages -> data/generated/."""

from dataclasses import asdict
from pathlib import Path

from medaug import augment, headline, tracking
from medaug.data.jsonl import write_json
from medaug.errors import guarded
from medaug.params import load_params, untraced
from medaug.paths import METRICS, GenerateIO


def main() -> str:
    p, io = load_params(), GenerateIO.at()
    report = augment.run(p, Path.cwd(), io)
    write_json(METRICS / "generate.json", headline.generate(report))
    with untraced():  # MLflow's copy of the params: no output of the stage
        logged = {"teacher": asdict(p.teacher), "generate": asdict(p.generate)}
    tracking.log_stage(Path.cwd(), "generate", logged, report)
    return (f"generate: wrote {io.generated.parent}/ ({report['generated']} records) and "
            f"{METRICS / 'generate.json'}")


if __name__ == "__main__":
    guarded(main)
