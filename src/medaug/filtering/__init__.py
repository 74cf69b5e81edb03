"""Filtering of generated records (validate, dedup, decontaminate) with a funnel report."""

from medaug.filtering.funnel import run

__all__ = ["run"]
