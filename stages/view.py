"""DVC stage `view`: reports/view.html, one page to read every item the teacher was asked for, kept or dropped and
why (medaug.view), and the same rows as a table in the stage's MLflow run."""

from pathlib import Path

from medaug import view
from medaug.data.jsonl import atomic_path
from medaug.errors import guarded
from medaug.paths import VIEW


def main() -> str:
    text, rows = view.build(Path.cwd())
    with atomic_path(VIEW) as tmp:
        tmp.write_text(text, encoding="utf-8")
    view.log_table(Path.cwd(), rows, VIEW)
    kept = sum(r["fate"] == "kept" for r in rows)
    return f"view: wrote {VIEW} ({len(rows)} items asked for, {kept} kept; `medaug view --rev main` for changes)"


if __name__ == "__main__":
    guarded(main)
