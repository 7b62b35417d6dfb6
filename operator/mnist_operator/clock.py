"""The time as the API server writes it in a status (RFC 3339, whole seconds, UTC)."""

import datetime


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
