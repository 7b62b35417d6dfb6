"""The benchmarks: each ``bench/<name>.py`` (no leading underscore) is one, run from the repository root
as a module, ``python -m bench.<name> [--help]``; ``make bench`` runs them all. ``_common.py`` holds what
they share, ``harness/`` the operator benchmark's parts. They import the project's packages and the test
suite's servers and harness (``tests.support``) the normal way: no benchmark edits ``sys.path``.

Nothing is imported here: the baseline operator (``python -m bench.harness.baseline_operator``) is
measured, so its package must cost nothing.
"""
