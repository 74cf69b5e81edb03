"""Filtering of generated records: the steps of filtering/steps/ (one module each: validate, dedup, decontaminate,
judge, consistency, balance; `filter.steps` picks and orders them), run by funnel.py with a funnel report."""

from medaug.filtering.funnel import run

__all__ = ["run"]
