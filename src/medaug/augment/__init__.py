"""Teacher-LLM generation strategies (rewrite, new, grounded, mesh); prompts live in prompts/ as text files."""

from medaug.augment.generate import dry_run, run

__all__ = ["dry_run", "run"]
