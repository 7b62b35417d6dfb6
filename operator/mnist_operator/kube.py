"""The operator's one way to the API server besides kopf's own: plain JSON requests through the kubernetes
client's connection pool and credentials (kubeconfig, in-cluster token, exec plugins and their refresh,
TLS, proxies), with one error type, :class:`ApiError`, that carries the server's status and message.

Why not the generated ``BatchV1Api``/``CustomObjectsApi``/``CoreV1Api``: the operator reads every answer
as JSON anyway, and ``CoreV1Api`` alone imports hundreds of model modules on first use (a measurable
share of the operator's memory, docs/benchmarks.md); decoding into models and back also costs more than
the request. The client is built from an explicit configuration (in-cluster, or the file KUBECONFIG names
at call time, not at import time) and never from global state.
"""

import asyncio
import functools
import json
import os
import urllib.parse
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes
import urllib3
from kubernetes.client import ApiClient

from mnist_api.resource import GROUP, PLURAL, VERSION

Timeout = float | tuple[float, float] | None
# Connect, then read: a call that hangs must not hold a status write (or the election) forever.
CALL_TIMEOUT: Timeout = (10.0, 60.0)
MERGE_PATCH = "application/merge-patch+json"
TRAININGS = f"/apis/{GROUP}/{VERSION}"
LIST_PAGE = 500
KUEUE_VERSIONS = ("v1beta2", "v1beta1")
# Threads of the creations' own pool (Jobs and Services), next to asyncio's default pool (min(32, cores
# + 4) threads) for every other call: a creation never queues behind status writes or Events in the
# operator, whatever their number. Jobs are created as fast as the API server answers this many calls at
# once: the default pool on a small node keeps too few POSTs in flight to use the API server's CPU
# during a burst (docs/benchmarks.md, section 5). The connection pool holds a connection for every
# thread of both.
CREATION_THREADS = 16
CONNECTIONS = CREATION_THREADS + min(32, (os.cpu_count() or 1) + 4)


class ApiError(Exception):
    """The API server answered with an error status; ``message`` is its Status message when it sent one."""

    def __init__(self, status: int, reason: str, body: str) -> None:
        self.status = status
        self.reason = reason
        self.body = body
        self.message = _status_message(body)
        super().__init__(f"HTTP {status} {reason}: {self.message}")


def make_api_client() -> ApiClient:
    configuration = kubernetes.client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG") or None, client_configuration=configuration
        )
    # The client's default (5 per core) is fewer than the threads that may call at once: a connection
    # past it is opened, used once and discarded, with a warning each time.
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize, CONNECTIONS)
    return ApiClient(configuration)


def request(
    client: ApiClient,
    method: str,
    path: str,
    *,
    query: Mapping[str, Any] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    stream: bool = False,
    timeout: Timeout = CALL_TIMEOUT,
) -> Any:
    """One blocking request: the decoded JSON answer, or with ``stream=True`` the open response (the
    caller releases it). Raises :class:`ApiError` on an error status."""
    url = client.configuration.host.rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode({key: _text(value) for key, value in query.items()})
    headers = {**client.default_headers, "Accept": "application/json"}
    for auth in client.configuration.auth_settings().values():
        if auth.get("in") == "header" and auth.get("value"):
            headers[auth["key"]] = auth["value"]
    payload = None
    if body is not None:
        headers["Content-Type"] = content_type
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


class Kube:
    """The calls the operator makes, each one request in a worker thread (the event loop never blocks).
    Creations of children have threads of their own (``CREATION_THREADS``)."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self._creations: ThreadPoolExecutor | None = None

    async def call(self, method: str, path: str, **options: Any) -> Any:
        return await asyncio.to_thread(request, self.client, method, path, **options)

    async def _create(self, path: str, body: dict[str, Any]) -> Any:
        if self._creations is None:  # made on first use: a Kube that creates nothing starts no thread
            self._creations = ThreadPoolExecutor(CREATION_THREADS, thread_name_prefix="kube-create")
        call = functools.partial(request, self.client, "POST", path, body=body)
        return await asyncio.get_running_loop().run_in_executor(self._creations, call)

    # -- Jobs ---------------------------------------------------------------------------------------
    async def create_job(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the Job, or return the one that exists (created by an earlier run of the operator)."""
        return await self._create_or_get("/apis/batch/v1", "jobs", body)

    async def patch_job_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        path = f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}"
        await self.call("PATCH", path, body={"spec": {"suspend": suspend}}, content_type=MERGE_PATCH)

    # -- Services -----------------------------------------------------------------------------------
    async def create_service(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the Service, or return the one that exists (created by an earlier reconcile)."""
        return await self._create_or_get("/api/v1", "services", body)

    async def _create_or_get(
        self, group_version: str, plural: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """POST ``body``; on 409 the object that exists. Returns it and whether this call created it."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        collection = f"{group_version}/namespaces/{namespace}/{plural}"
        try:
            return await self._create(collection, body), True
        except ApiError as error:
            if error.status != 409:
                raise
        return await self.call("GET", f"{collection}/{name}"), False

    # -- trainings ----------------------------------------------------------------------------------
    async def read_training(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The named training as stored, or None when there is none."""
        try:
            body: dict[str, Any] = await self.call(
                "GET", f"{TRAININGS}/namespaces/{namespace}/{PLURAL}/{name}"
            )
        except ApiError as error:
            if error.status == 404:
                return None
            raise
        return body

    async def patch_training_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        path = f"{TRAININGS}/namespaces/{namespace}/{PLURAL}/{name}/status"
        await self.call("PATCH", path, body={"status": status}, content_type=MERGE_PATCH)

    async def delete_training(self, namespace: str, name: str, uid: str) -> None:
        """Delete this very training (a newer one of the same name is left alone); gone already is fine."""
        options = {"preconditions": {"uid": uid}, "propagationPolicy": "Background"}
        try:
            await self.call("DELETE", f"{TRAININGS}/namespaces/{namespace}/{PLURAL}/{name}", body=options)
        except ApiError as error:
            if error.status not in (404, 409):
                raise

    async def training_uids(self, namespaces: tuple[str, ...]) -> set[str]:
        """The uid of every training in ``namespaces`` (all when empty), listed in pages."""
        paths = [f"{TRAININGS}/namespaces/{ns}/{PLURAL}" for ns in namespaces] or [f"{TRAININGS}/{PLURAL}"]
        uids: set[str] = set()
        for path in paths:
            token: str | None = None
            while True:
                query = {"limit": LIST_PAGE, **({"continue": token} if token else {})}
                page = await self.call("GET", path, query=query)
                uids |= {item["metadata"]["uid"] for item in page.get("items") or []}
                if not (token := (page.get("metadata") or {}).get("continue")):
                    break
        return uids

    # -- Kueue -------------------------------------------------------------------------------------
    async def list_workloads(self, namespace: str) -> list[dict[str, Any]] | None:
        """Kueue's Workloads in ``namespace`` (v1beta2, else v1beta1 for Kueue before 0.15); None when
        neither is served (Kueue is not installed)."""
        for version in KUEUE_VERSIONS:
            try:
                page = await self.call(
                    "GET", f"/apis/kueue.x-k8s.io/{version}/namespaces/{namespace}/workloads"
                )
            except ApiError as error:
                if error.status == 404:
                    continue
                raise
            items: list[dict[str, Any]] = page.get("items") or []
            return items
        return None

    # -- Events and Leases --------------------------------------------------------------------------
    async def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        await self.call("POST", f"/api/v1/namespaces/{namespace}/events", body=body)

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            lease: dict[str, Any] = await self.call("GET", f"{_leases(namespace)}/{name}")
        except ApiError as error:
            if error.status == 404:
                return None
            raise
        return lease

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> None:
        await self.call("POST", _leases(namespace), body=body)

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        """PUT with the resourceVersion read: the server refuses it (409) if anyone wrote in between."""
        await self.call("PUT", f"{_leases(namespace)}/{name}", body=body)


def _leases(namespace: str) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


def _status_message(body: str) -> str:
    try:
        status = json.loads(body)
    except ValueError:
        return body[:500]
    message = status.get("message") if isinstance(status, dict) else None
    return str(message) if message else body[:500]


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _timeout(timeout: Timeout) -> urllib3.Timeout | None:
    if timeout is None:
        return None
    if isinstance(timeout, tuple):
        return urllib3.Timeout(connect=timeout[0], read=timeout[1])
    return urllib3.Timeout(total=timeout)
