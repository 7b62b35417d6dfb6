"""One pod on a test node: run its containers as local processes and report status like a kubelet.

Lifecycle (one thread per pod): materialize volumes -> init containers one by one -> all containers
together -> restart per ``restartPolicy`` -> terminal phase -> on deletion, SIGTERM/SIGKILL and remove
the pod object. Status goes back as strategic-merge patches of ``pods/status`` (conditions merge by
type, so the scheduler's PodScheduled condition and anything else another writer set is kept).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from . import processes
from .podspec import (
    MOUNT_MAP_ENV,
    ConfigError,
    Json,
    Layout,
    Lookups,
    UnsupportedError,
    container_env,
    expand,
    materialize_volumes,
    mount_map,
    rewrite_paths,
)

log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"
CONTAINER_ID_SCHEME = "test-node-agent://"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class WorkerContext:
    """What every pod worker of one node shares."""

    # CoreV1Api. Typed Any because we pass API-shaped dicts as bodies, which every client version
    # accepts but whose generated signatures ask for model objects.
    api: Any
    layout: Layout
    node_name: str
    base_env: Mapping[str, str]
    lookups: Lookups
    restart_backoff: tuple[float, float] = (0.5, 10.0)  # first delay, cap (the kubelet: 10 s, 300 s)
    on_exit: Callable[[str], None] = lambda uid: None


@dataclass
class Container:
    spec: Json
    init: bool
    restart_count: int = 0
    proc: subprocess.Popen[bytes] | None = None
    state: Json = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Json = field(default_factory=dict)
    final: bool = False  # terminated and will not run again
    restart_at: float | None = None
    started_at: str | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def exit_code(self) -> int | None:
        terminated = self.state.get("terminated")
        return None if terminated is None else int(terminated["exitCode"])

    def status(self) -> Json:
        running = "running" in self.state
        status: Json = {
            "name": self.name,
            "image": self.spec.get("image") or "",
            "imageID": "",
            # An init container counts as ready once it has completed successfully.
            "ready": (self.exit_code == 0) if self.init else running,
            "started": running,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.proc is not None:
            status["containerID"] = f"{CONTAINER_ID_SCHEME}{self.proc.pid}"
        return status


class PodWorker:
    def __init__(self, ctx: WorkerContext, pod: Json) -> None:
        self.ctx = ctx
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        spec = pod["spec"]
        self.restart_policy: str = spec.get("restartPolicy") or "Always"
        self.init = [Container(c, init=True) for c in spec.get("initContainers") or []]
        self.main = [Container(c, init=False) for c in spec.get("containers") or []]
        self.phase = "Pending"
        self.reason: str | None = None
        self.message: str | None = None
        self.start_time = now()
        self.flags = {"PodReadyToStartContainers": False, "Initialized": False, "ContainersReady": False}
        self.transitions: dict[str, tuple[str, str]] = {}  # type -> (status, since)
        self._wake = threading.Event()
        self._delete = threading.Event()  # deletionTimestamp seen, or the pod is gone
        self._gone = False  # the pod object no longer exists: nothing left to report
        self._stop_agent = False
        self._thread = threading.Thread(
            target=self._main, name=f"pod {self.namespace}/{self.name}", daemon=True
        )

    # --- called from the agent's watch thread --------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def update(self, pod: Json) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self._delete.set()
            self._wake.set()

    def gone(self) -> None:
        self._gone = True
        self._delete.set()
        self._wake.set()

    def shutdown(self) -> None:
        """Agent teardown: kill now, report nothing."""
        self._stop_agent = True
        self.gone()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def alive_pids(self) -> list[int]:
        return [c.proc.pid for c in self.init + self.main if c.proc is not None and c.proc.poll() is None]

    # --- the pod's life ---------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._run()
        except Exception as exc:
            log.exception("pod worker %s/%s crashed", self.namespace, self.name)
            self._kill_all(grace=0)
            # Say so on the pod: a test waiting for it then fails with the reason, not a timeout.
            self.phase, self.reason, self.message = "Failed", "TestNodeAgentError", repr(exc)
            with contextlib.suppress(Exception):
                self._report()
        finally:
            self.ctx.on_exit(self.uid)

    def _run(self) -> None:
        pod_dir = self.ctx.layout.pod_dir(self.pod)
        (pod_dir / "logs").mkdir(parents=True, exist_ok=True)
        # logs() uses this to pick the default container, as kubectl picks the first one.
        (pod_dir / "containers.json").write_text(json.dumps([c.name for c in self.main]))
        self._report()
        prepared = self._prepare()
        if prepared is None:
            return self._finish_after_delete()
        volumes, envs = prepared
        self.flags["PodReadyToStartContainers"] = True

        for container in self.init:
            if not self._run_init(container, volumes, envs[container.name]):
                return self._finish_after_delete()
            if self.phase == "Failed":
                return self._await_deletion()
        self.flags["Initialized"] = True
        for container in self.main:
            self._spawn(container, volumes, envs[container.name])
        self._refresh_phase()
        self._report()

        while not self._delete.is_set():
            self._wake.clear()  # before looking: a wake-up after the look is never lost
            changed = self._reap_and_restart(volumes, envs)
            if all(c.final for c in self.main):
                self._refresh_phase()
                self._report()
                return self._await_deletion()
            if changed:
                self._refresh_phase()
                self._report()
            self._wake.wait(timeout=self._next_wakeup())
        self._finish_after_delete()

    def _prepare(self) -> tuple[dict[str, Path], dict[str, dict[str, str]]] | None:
        """Volumes and env for every container; a missing Secret is retried like the kubelet does."""
        while not self._delete.is_set():
            try:
                volumes = materialize_volumes(self.pod, self.ctx.layout, self.ctx.lookups)
                envs = {
                    c.name: container_env(self.pod, c.spec, self._base_env(), self.ctx.lookups)
                    for c in self.init + self.main
                }
                return volumes, envs
            except (ConfigError, ApiException) as exc:
                # Also API errors: e.g. TokenRequest is refused while the namespace terminates.
                self._all_waiting("CreateContainerConfigError", str(exc).splitlines()[0])
                self._report()
                self._delete.wait(1.0)
            except UnsupportedError as exc:
                # A real kubelet would retry forever; failing fast makes the test say why.
                self.phase, self.reason, self.message = "Failed", "UnsupportedByTestNodeAgent", str(exc)
                self._all_waiting("CreateContainerError", str(exc))
                self._report()
                self._delete.wait()
                return None
        return None

    def _base_env(self) -> dict[str, str]:
        env = dict(self.ctx.base_env)
        env["HOSTNAME"] = self.name
        env["HOME"] = str(self.ctx.layout.pod_dir(self.pod) / "home")
        return env

    def _run_init(self, container: Container, volumes: Mapping[str, Path], env: Mapping[str, str]) -> bool:
        """Run one init container to success; False if the pod was deleted meanwhile."""
        while True:
            self._spawn(container, volumes, env)
            self._report()
            proc = container.proc  # None after a StartError, whose terminated state is already set
            while proc is not None:
                self._wake.clear()  # before looking: a wake-up after the look is never lost
                if self._delete.is_set():
                    return False
                if proc.poll() is not None:
                    break
                self._wake.wait(timeout=1.0)
            self._record_exit(container)
            if container.exit_code == 0:
                container.final = True
                return True
            if self.restart_policy == "Never":
                container.final = True
                self.phase = "Failed"
                self._report()
                return True
            delay = self._backoff(container)
            container.state = {"waiting": {"reason": "CrashLoopBackOff", "message": f"back-off {delay:.1f}s"}}
            self._report()
            if self._delete.wait(delay):
                return False
            container.restart_count += 1

    def _spawn(self, container: Container, volumes: Mapping[str, Path], env_in: Mapping[str, str]) -> None:
        spec = container.spec
        pod_dir = self.ctx.layout.pod_dir(self.pod)
        mounts = mount_map(spec, volumes, env_in)
        # Only what the pod declares is rewritten. Values inherited from the host (PATH, ...) and the
        # executable (the image is ignored, so command[0] names a host binary) are host paths: a
        # virtualenv under /tmp must not turn into the pod's /tmp volume when the pod mounts /tmp.
        host = self._base_env()
        env = {k: v if host.get(k) == v else rewrite_paths(v, mounts) for k, v in env_in.items()}
        env[MOUNT_MAP_ENV] = json.dumps({k: str(v) for k, v in mounts.items()})
        words = [expand(a, env_in) for a in [*spec.get("command", []), *spec.get("args", [])]]
        argv = words[:1] + [rewrite_paths(word, mounts) for word in words[1:]]
        cwd = self._working_dir(spec.get("workingDir"), mounts, pod_dir)
        Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
        container.started_at = now()
        if not spec.get("command"):
            return self._start_error(container, "the test node agent ignores images: set `command`")
        if shutil.which(argv[0], path=env.get("PATH")) is None:
            return self._start_error(container, f"executable not found: {argv[0]}")
        container.proc = processes.spawn(
            argv, log_path=self.ctx.layout.log_file(self.pod, container.name), env=env, cwd=cwd, append=True
        )
        container.state = {"running": {"startedAt": container.started_at}}
        proc = container.proc
        threading.Thread(target=self._wait_and_wake, args=(proc,), daemon=True).start()

    def _wait_and_wake(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self._wake.set()

    @staticmethod
    def _working_dir(working_dir: str | None, mounts: Mapping[str, Path], pod_dir: Path) -> Path:
        if not working_dir:
            path = pod_dir / "work"
        else:
            rewritten = rewrite_paths(working_dir, mounts)
            # Not under a volume: it would be in the image's filesystem, which we model per pod.
            path = (
                Path(rewritten) if rewritten != working_dir else pod_dir / "rootfs" / working_dir.lstrip("/")
            )
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _start_error(self, container: Container, message: str) -> None:
        container.proc = None
        stamp = now()
        container.state = {
            "terminated": {
                "exitCode": 128,
                "reason": "StartError",
                "message": message,
                "startedAt": stamp,
                "finishedAt": stamp,
            }
        }
        self._wake.set()

    def _record_exit(self, container: Container) -> None:
        """Move a finished process into a terminated state (Completed / Error, as the kubelet says)."""
        if container.proc is None:  # StartError, already terminated
            return
        code = container.proc.wait()
        processes.forget(container.proc)
        # A signal death is reported as 128 + signal, the way container runtimes do.
        exit_code = 128 - code if code < 0 else code
        container.state = {
            "terminated": {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "startedAt": container.started_at,
                "finishedAt": now(),
                "containerID": f"{CONTAINER_ID_SCHEME}{container.proc.pid}",
            }
        }
        if code < 0:
            container.state["terminated"]["signal"] = -code

    def _reap_and_restart(self, volumes: Mapping[str, Path], envs: Mapping[str, Mapping[str, str]]) -> bool:
        changed = False
        for container in self.main:
            if container.final:
                continue
            if container.restart_at is not None:
                if time.monotonic() >= container.restart_at:
                    container.restart_at = None
                    container.restart_count += 1
                    self._spawn(container, volumes, envs[container.name])
                    changed = True
                continue
            exited = container.proc is None or container.proc.poll() is not None
            if not exited:
                continue
            self._record_exit(container)
            changed = True
            code = container.exit_code
            if self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0):
                delay = self._backoff(container)
                container.last_state = container.state
                container.state = {
                    "waiting": {"reason": "CrashLoopBackOff", "message": f"back-off {delay:.1f}s restarting"}
                }
                container.restart_at = time.monotonic() + delay
            else:
                container.final = True
        return changed

    def _backoff(self, container: Container) -> float:
        first, cap = self.ctx.restart_backoff
        return float(min(cap, first * (2**container.restart_count)))

    def _next_wakeup(self) -> float:
        pending = [c.restart_at - time.monotonic() for c in self.main if c.restart_at is not None]
        return max(0.01, min([1.0, *pending]))

    def _refresh_phase(self) -> None:
        if self.phase in ("Succeeded", "Failed"):
            return
        if all(c.final for c in self.main):
            self.phase = "Succeeded" if all(c.exit_code == 0 for c in self.main) else "Failed"
        else:
            self.phase = "Running"
        ready = self.phase == "Running" and all("running" in c.state for c in self.main)
        self.flags["ContainersReady"] = ready

    def _all_waiting(self, reason: str, message: str) -> None:
        for container in self.init + self.main:
            container.state = {"waiting": {"reason": reason, "message": message}}

    # --- deletion -------------------------------------------------------------------------------

    def _await_deletion(self) -> None:
        self._delete.wait()
        self._finish_after_delete()

    def _finish_after_delete(self) -> None:
        """deletionTimestamp seen: stop the processes within the grace period, then drop the object."""
        if self._gone:
            self._kill_all(grace=0)
            return
        grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        if self._kill_all(grace=float(grace)):
            if self.phase not in ("Succeeded", "Failed"):
                # As kubelets do since 1.27: a deleted pod reaches a terminal phase before it goes.
                self.phase = "Succeeded" if all(c.exit_code == 0 for c in self.main) else "Failed"
            self.flags["ContainersReady"] = False
            self._report()
        try:
            # The apiserver reads DeleteOptions from the body when there is one and then ignores the
            # query string, so the grace period goes in the body next to the UID precondition.
            self.ctx.api.delete_namespaced_pod(
                self.name,
                self.namespace,
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status != 404:  # gone already is the goal
                log.warning("deleting %s/%s: %s", self.namespace, self.name, exc)

    def _kill_all(self, grace: float) -> bool:
        """SIGTERM every live container's process group, SIGKILL after ``grace``.

        Returns True if some container was still marked running (so there is status to report)."""
        started = [c for c in self.init + self.main if c.proc is not None and "running" in c.state]
        for container in started:
            assert container.proc is not None
            processes.signal_group(container.proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for container in started:
            assert container.proc is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                container.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            # The group may hold children that ignored SIGTERM even though the leader exited.
            processes.signal_group(container.proc, signal.SIGKILL)
            self._record_exit(container)
            container.final = True
        return bool(started)

    # --- status -----------------------------------------------------------------------------------

    def _condition(self, kind: str, value: bool, reason: str | None = None) -> Json:
        status = "True" if value else "False"
        previous = self.transitions.get(kind)
        if previous is None or previous[0] != status:
            self.transitions[kind] = (status, now())
        condition: Json = {
            "type": kind,
            "status": status,
            "lastTransitionTime": self.transitions[kind][1],
            "lastProbeTime": None,
        }
        if reason and not value:
            condition["reason"] = reason
        return condition

    def _status(self) -> Json:
        completed = self.phase in ("Succeeded", "Failed")
        not_ready_reason = "PodCompleted" if completed else "ContainersNotReady"
        ready = self.flags["ContainersReady"]
        status: Json = {
            "phase": self.phase,
            "hostIP": LOOPBACK,
            "hostIPs": [{"ip": LOOPBACK}],
            "podIP": LOOPBACK,
            "podIPs": [{"ip": LOOPBACK}],
            "startTime": self.start_time,
            "conditions": [
                self._condition("PodReadyToStartContainers", self.flags["PodReadyToStartContainers"]),
                self._condition("Initialized", self.flags["Initialized"], "ContainersNotInitialized"),
                self._condition("ContainersReady", ready, not_ready_reason),
                self._condition("Ready", ready, not_ready_reason),
            ],
            "containerStatuses": [c.status() for c in self.main],
        }
        if self.init:
            status["initContainerStatuses"] = [c.status() for c in self.init]
        if self.reason:
            status["reason"], status["message"] = self.reason, self.message
        return status

    def _report(self) -> None:
        if self._gone or self._stop_agent:
            return
        body: Any = {"status": self._status()}
        for attempt in range(3):
            try:
                self.ctx.api.patch_namespaced_pod_status(
                    self.name,
                    self.namespace,
                    body,
                    _content_type="application/strategic-merge-patch+json",
                    _preload_content=False,
                )
                return
            except ApiException as exc:
                if exc.status == 404:
                    self.gone()
                    return
                log.warning("status of %s/%s: %s (attempt %d)", self.namespace, self.name, exc, attempt)
                time.sleep(0.2 * (attempt + 1))
