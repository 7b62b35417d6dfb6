"""Plain HTTP requests to the API server through the kubernetes client's own connection pool and
credentials (kubeconfig, in-cluster token, exec plugins and their refresh, TLS, proxies).

For the calls that would otherwise need the generated ``CoreV1Api`` (listing and watching pods,
posting Events): in kubernetes 37 that class imports some 270 pydantic model modules on first use, 14 MiB
of operator memory for two endpoints whose answers the operator reads as JSON anyway.
"""

import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes.client import ApiClient

Timeout = float | tuple[float, float] | None


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, body: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {body[:500]}")
        self.status = status
        self.reason = reason
        self.body = body


def request(
    client: ApiClient,
    method: str,
    path: str,
    *,
    query: Mapping[str, Any] | None = None,
    body: Any = None,
    stream: bool = False,
    timeout: Timeout = None,
) -> Any:
    """The decoded JSON answer, or with ``stream=True`` the open response (the caller releases it)."""
    url = client.configuration.host.rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode({key: _text(value) for key, value in query.items()})
    headers = {**client.default_headers, "Accept": "application/json"}
    for auth in client.configuration.auth_settings().values():
        if auth.get("in") == "header" and auth.get("value"):
            headers[auth["key"]] = auth["value"]
    payload = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        payload = json.dumps(body).encode()
    response = client.rest_client.pool_manager.request(
        method, url, body=payload, headers=headers, preload_content=False, timeout=_timeout(timeout)
    )
    if response.status >= 400:
        try:
            text = response.data.decode("utf-8", errors="replace")
        finally:
            response.release_conn()
        raise ApiError(response.status, response.reason or "", text)
    if stream:
        return response
    try:
        data = response.data
    finally:
        response.release_conn()
    return json.loads(data) if data else None


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _timeout(timeout: Timeout) -> urllib3.Timeout | None:
    if timeout is None:
        return None
    if isinstance(timeout, tuple):
        return urllib3.Timeout(connect=timeout[0], read=timeout[1])
    return urllib3.Timeout(total=timeout)
