"""Helpers of the benchmarks in ``bench/``: a timing kmock emulator, operator subprocesses, the baseline.

They live in a sub-folder because ``make bench`` runs every ``bench/*.py`` as a benchmark script.
"""
