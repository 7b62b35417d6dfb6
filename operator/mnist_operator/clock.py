"""Time as Kubernetes writes it in statuses and conditions: UTC, whole seconds, ``Z`` (RFC 3339)."""

import datetime
from typing import Final

TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"


def utc_now() -> str:
    """Now, as a status timestamp: ``2026-11-23T10:00:00Z``."""
    return datetime.datetime.now(datetime.UTC).strftime(TIME_FORMAT)
