"""Jobs and pods, watched outside kopf and reduced to what the status needs as each event arrives.

kopf queues every watch event whole, per object, until that object's handlers run. A real Job or pod is
tens of KiB of JSON (managedFields, server defaults, the trainer's environment, the pod template); with
1,000 trainings on a saturated event loop those queues held most of the operator's memory
(docs/benchmarks.md, section 5). Here
a thread per watched kind reads the stream, keeps a small summary of each object (what client-go's
transform functions do) and hands only the summary to the event loop: when the loop falls behind, what
waits is summaries of a few hundred bytes, not whole objects.

Each thread lists (in pages) and then watches from the list's resourceVersion, with bookmarks; when the
server says the version is too old (410) it lists again, and reports whatever vanished in between as
deleted. Authentication is the kubernetes client's, as for every other call of the operator.
"""

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.watch.watch import iter_resp_lines

from .backoff import Backoff
from .kube import ApiError, request
from .state import ChildKind, job_summary, pod_summary

log = logging.getLogger(__name__)
Deliver = Callable[[ChildKind, str | None, dict[str, Any]], None]
ObjectKey = tuple[str, str]  # namespace, name
SUMMARIES: dict[ChildKind, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "job": job_summary,
    "pod": pod_summary,
}
PATHS: dict[ChildKind, str] = {"job": "/apis/batch/v1", "pod": "/api/v1"}
PAGE_SIZE = 250  # a list page is decoded whole: 250 pods are a few MiB of Python objects, not 100s
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0)  # then every 10 s: back within seconds of an API-server restart


class ResourceVersionTooOldError(Exception):
    """The server no longer has the resourceVersion to watch from (410 Gone): list again."""


@dataclass
class Known:
    """What one watch has reported, by namespace and name, so that a relist can tell what vanished."""

    summaries: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)

    def record(self, event_type: str | None, summary: dict[str, Any]) -> None:
        key = object_key(summary)
        if event_type == "DELETED":
            self.summaries.pop(key, None)
        else:
            # Only the metadata: what a synthesized DELETED event needs to find the training.
            self.summaries[key] = {"metadata": summary["metadata"]}

    def vanished(self, listed: set[ObjectKey]) -> list[dict[str, Any]]:
        return [summary for key, summary in self.summaries.items() if key not in listed]


def object_key(body: Mapping[str, Any]) -> ObjectKey:
    metadata = body.get("metadata") or {}
    return metadata.get("namespace") or "", metadata.get("name") or ""


@dataclass
class ChildWatch:
    """One kind of child (Jobs or pods), in one namespace or cluster-wide, watched in its own thread."""

    client: ApiClient
    kind: ChildKind
    label_selector: str
    deliver: Deliver
    namespace: str | None = None  # None: every namespace
    server_timeout_seconds: int = 300
    known: Known = field(default_factory=Known)
    resource_version: str | None = None
    events_handled: int = 0
    _stopping: threading.Event = field(default_factory=threading.Event)
    _response: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        where = self.namespace or "all namespaces"
        self._thread = threading.Thread(target=self._run, name=f"watch {self.kind}s in {where}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop and wait for the thread: a blocked read is cut off by shutting its socket down."""
        self._stopping.set()
        with self._lock:
            response = self._response
        if response is not None:
            _interrupt(response)
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = Backoff(RETRY_SECONDS)
        while not self._stopping.is_set():
            handled = self.events_handled
            try:
                if self.resource_version is None:
                    self._list()
                self._watch()
                backoff.reset()
            except ResourceVersionTooOldError:
                log.info(
                    "%s watch: resourceVersion %s is too old; listing again", self.kind, self.resource_version
                )
                self.resource_version = None
            except Exception as error:  # the API server restarting, a network blip, RBAC not yet in place
                if self._stopping.is_set():
                    break
                if self.events_handled > handled:  # it streamed for a while: a fresh failure
                    backoff.reset()
                delay = backoff.next_delay()
                log.warning("%s watch failed (%s); retrying in %.0f s", self.kind, _describe(error), delay)
                self._stopping.wait(delay)

    def _list(self) -> None:
        listed: set[ObjectKey] = set()
        token: str | None = None
        while True:
            page = self._call({"limit": PAGE_SIZE, **({"continue": token} if token else {})})
            for item in page.get("items") or []:
                summary = self._summarize(item)
                listed.add(object_key(summary))
                self._deliver(None, summary)  # None: found by a listing, as kopf reports it
            metadata = page.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                break
        for summary in self.known.vanished(listed):
            self._deliver("DELETED", summary)
        # A server without resourceVersions (an emulator) gets an unversioned watch.
        self.resource_version = metadata.get("resourceVersion") or ""

    def _watch(self) -> None:
        version = {"resourceVersion": self.resource_version} if self.resource_version else {}
        query = {"watch": True, "allowWatchBookmarks": True, "timeoutSeconds": self.server_timeout_seconds}
        response = self._call({**query, **version}, stream=True)
        with self._lock:  # stop() sets the flag before it takes the lock: one of us sees the other
            if self._stopping.is_set():
                response.release_conn()
                return
            self._response = response
        try:
            for line in _lines(response):
                if self._stopping.is_set():
                    return
                self.handle_event(json.loads(line))
                self.events_handled += 1
        finally:
            with self._lock:
                self._response = None
            response.release_conn()

    def handle_event(self, event: Mapping[str, Any]) -> None:
        """One line of the watch stream: delivered, or a bookmark (only its version), or an error."""
        event_type, body = event.get("type"), event.get("object") or {}
        if event_type == "ERROR":
            if body.get("code") == 410:
                raise ResourceVersionTooOldError(body.get("message"))
            raise RuntimeError(f"watch error {body.get('code')}: {body.get('message')}")
        version = (body.get("metadata") or {}).get("resourceVersion")
        if event_type != "BOOKMARK":
            self._deliver(event_type, self._summarize(body))
        if version:
            self.resource_version = version

    def _summarize(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return SUMMARIES[self.kind](body)

    def _deliver(self, event_type: str | None, summary: dict[str, Any]) -> None:
        self.known.record(event_type, summary)
        self.deliver(self.kind, event_type, summary)

    def _call(self, query: dict[str, Any], *, stream: bool = False) -> Any:
        """List (or watch, ``stream=True``) as plain JSON: decoding into client models and back would
        cost more than the summaries save."""
        namespace = f"/namespaces/{self.namespace}" if self.namespace else ""
        path = f"{PATHS[self.kind]}{namespace}/{self.kind}s"
        timeout = (30.0, self.server_timeout_seconds + 30.0)  # the server ends a watch first
        try:
            return request(
                self.client,
                "GET",
                path,
                query={"labelSelector": self.label_selector, **query},
                stream=stream,
                timeout=timeout,
            )
        except ApiError as error:
            if error.status == 410:
                raise ResourceVersionTooOldError(error.message) from None
            raise


def _lines(response: Any) -> Iterator[str]:
    for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
        if line:
            yield line


def _interrupt(response: Any) -> None:
    """Unblock a read in another thread (urllib3 2.3+); older urllib3 notices at its read timeout."""
    shutdown = getattr(response, "shutdown", None)
    try:
        if shutdown is not None:
            shutdown()
        else:
            response.close()
    except Exception as error:  # already closed: nothing to interrupt
        log.debug("closing a watch: %s", error)


def _describe(error: Exception) -> str:
    if isinstance(error, ApiError):
        return f"HTTP {error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"


Handle = Callable[[ChildKind, str | None, dict[str, Any]], Awaitable[None]]


class ChildWatches:
    """The operator's watches of Jobs and pods (per namespace, or cluster-wide), feeding ``handle`` on
    the event loop one event at a time, in the order each watch saw them."""

    def __init__(
        self,
        client: ApiClient,
        handle: Handle,
        *,
        label_selector: str,
        namespaces: tuple[str, ...] = (),
        server_timeout_seconds: int = 300,
    ) -> None:
        self.handle = handle
        self._queue: asyncio.Queue[tuple[ChildKind, str | None, dict[str, Any]]] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self.watches = [
            ChildWatch(
                client,
                kind,
                label_selector,
                self._from_thread,
                namespace=namespace,
                server_timeout_seconds=server_timeout_seconds,
            )
            for kind in SUMMARIES
            for namespace in (namespaces or (None,))
        ]
        self._consumer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._consumer = asyncio.create_task(self._consume(), name="child events")
        for watch in self.watches:
            watch.start()

    async def stop(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(watch.stop) for watch in self.watches))
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)

    def _from_thread(self, kind: ChildKind, event_type: str | None, summary: dict[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: the operator is exiting
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, event_type, summary))

    async def _consume(self) -> None:
        while True:
            kind, event_type, summary = await self._queue.get()
            try:
                await self.handle(kind, event_type, summary)
            except Exception:  # one bad event must not stop the stream of the others
                log.exception("handling a %s event failed", kind)
