"""Teacher-LLM generation strategies (rewrite, new, grounded, mesh); prompts live in prompts/ as text files."""

from medaug.augment.generate import dry_run, run
from medaug.data.mesh import load_descriptors, mesh_coverage

__all__ = ["dry_run", "load_descriptors", "mesh_coverage", "run"]
