"""DVC stage `view`: reports/view.html, one page to read every item the teacher was asked for, kept or dropped and
why (medaug.view), with the data profile on top (medaug.data.profile: reports/profile.json, its headline in
metrics/profile.json, its bars in plots/profile.json), and the same rows as a table in the stage's MLflow run."""

from pathlib import Path

from medaug import headline, view
from medaug.data.jsonl import atomic_path, write_json
from medaug.data.profile import plot
from medaug.errors import guarded
from medaug.params import load_params
from medaug.paths import METRICS, PROFILE, PROFILE_PLOT, VIEW


def main() -> str:
    text, rows, profile = view.build(Path.cwd(), recipes=load_params().train.variants)
    with atomic_path(VIEW) as tmp:
        tmp.write_text(text, encoding="utf-8")
    write_json(PROFILE, profile)
    write_json(PROFILE_PLOT, plot(profile))
    write_json(METRICS / "profile.json", headline.profile(profile))
    view.log_table(Path.cwd(), rows, VIEW)
    kept = sum(r["fate"] == "kept" for r in rows)
    return (f"view: wrote {VIEW} ({len(rows)} items asked for, {kept} kept; `medaug view --rev main` for changes), "
            f"{PROFILE} and {METRICS / 'profile.json'}")


if __name__ == "__main__":
    guarded(main)
