"""DVC stage `view`: reports/view.html, one page to read every item the teacher was asked for, kept or dropped and
why (medaug.view), with the data profile on top (reports/profile.json: medaug.data.profile), and the same rows as
a table in the stage's MLflow run."""

from pathlib import Path

from medaug import view
from medaug.data.jsonl import atomic_path, write_json
from medaug.errors import guarded
from medaug.paths import VIEW


PROFILE = Path("reports/profile.json")


def main() -> str:
    text, rows, profile = view.build(Path.cwd())
    with atomic_path(VIEW) as tmp:
        tmp.write_text(text, encoding="utf-8")
    write_json(PROFILE, profile)
    view.log_table(Path.cwd(), rows, VIEW)
    kept = sum(r["fate"] == "kept" for r in rows)
    return (f"view: wrote {VIEW} ({len(rows)} items asked for, {kept} kept; `medaug view --rev main` for changes) "
            f"and {PROFILE}")


if __name__ == "__main__":
    guarded(main)
