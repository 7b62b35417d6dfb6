"""kopf's handler registration (handlers.py): what it keeps out of the operator's log."""

import logging

from mnist_operator.handlers import QuietEventHandler


def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)


def test_the_per_event_handlers_successes_are_dropped_and_everything_else_kept() -> None:
    quiet = QuietEventHandler()
    assert not quiet.filter(record("Handler 'training_event' succeeded."))
    assert quiet.filter(record("Handler 'ensure_job' succeeded."))
    assert quiet.filter(record("Creation is processed: 1 succeeded; 0 failed."))
    failed = "Handler 'training_event' failed with an exception. Will ignore."
    assert quiet.filter(record(failed, logging.ERROR))
