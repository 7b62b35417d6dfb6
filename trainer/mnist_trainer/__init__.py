"""mnist_trainer: the containerised trainer that the operator runs in each pod.

Configured only through the ``MNIST_*`` environment of ``mnist_api.env``; run as ``python -m
mnist_trainer``. Also exports ``TrainTestExporter`` and the seeds' bucket presets, so code written for
the seeds' ``gangplank`` library works with ``from mnist_trainer import TrainTestExporter``.
"""

from mnist_api.metrics import HISTOGRAM_WEIGHT_BUCKETS_0_3, HISTOGRAM_WEIGHT_BUCKETS_1_0

__all__ = ["HISTOGRAM_WEIGHT_BUCKETS_0_3", "HISTOGRAM_WEIGHT_BUCKETS_1_0", "TrainTestExporter"]


def __getattr__(name: str) -> object:
    # Lazy: `python -m mnist_trainer` must not import Keras before its signal handler is set.
    if name == "TrainTestExporter":
        from .metrics_push import TrainTestExporter

        return TrainTestExporter
    raise AttributeError(name)
