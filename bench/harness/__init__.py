"""Parts of the operator benchmark (bench/operator_scale.py): the baseline operator, operator
subprocesses, and what a run records from the real API server's audit log.

They live in a sub-package because ``make bench`` runs every ``bench/[!_]*.py`` as a benchmark.
"""
