"""Evaluation: the evaluate stage (evaluate.py), writing results (results.py), the scorer, the prompt (task.py),
metrics and statistics, the recipes table (compare.py) and the teacher baseline (teacher_baseline.py)."""
