"""Teacher-LLM generation strategies (rewrite, new); prompts live in prompts/ as text files."""

from medaug.augment.generate import run

__all__ = ["run"]
