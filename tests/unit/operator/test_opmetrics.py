"""The operator's own metrics as a fresh process serves them, before anything happened."""

import subprocess
import sys

SCRAPE = (
    "from prometheus_client import generate_latest; from mnist_operator import opmetrics; "
    "print(generate_latest(opmetrics.REGISTRY).decode())"
)


def test_every_labelled_counter_is_served_at_zero_before_its_first_increment() -> None:
    """A series born at 1 hides its first increment from increase(): the chart's MnistTrainingFailed alert
    would miss the first failed training after every operator restart."""
    scraped = subprocess.run(
        [sys.executable, "-c", SCRAPE], capture_output=True, text=True, check=True
    ).stdout
    for series in (
        'mnist_operator_trainings_finished_total{phase="Succeeded"} 0.0',
        'mnist_operator_trainings_finished_total{phase="Failed"} 0.0',
        'mnist_operator_pushgateway_polls_total{outcome="ok"} 0.0',
        'mnist_operator_pushgateway_polls_total{outcome="error"} 0.0',
        'mnist_operator_pushgateway_deletes_total{outcome="error"} 0.0',
        "mnist_operator_trainings_created_total 0.0",
    ):
        assert series in scraped.splitlines()
