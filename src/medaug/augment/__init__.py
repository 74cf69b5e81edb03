"""Teacher-LLM generation: the strategies (strategies/, one module each: rewrite, new, grounded, mesh,
progressive), their prompt files (prompts/), and the generate stage that runs them (generate.py)."""

from medaug.augment.generate import dry_run, run

__all__ = ["dry_run", "run"]
