"""etcd + kube-apiserver + kube-controller-manager + kube-scheduler on loopback, for one test session.

Everything binds 127.0.0.1 on kernel-chosen ports and keeps its state under one temporary directory,
so parallel sessions (two checkouts, CI next to a developer) do not collide. Nothing here ever
connects to a non-loopback address: the apiserver reaches "kubelets" only by a node's InternalIP
(127.0.0.1, see ``--kubelet-preferred-address-types``) and its endpoint reconciler is off, because
Endpoints may not hold loopback addresses anyway.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes.config import new_client_from_config

from . import processes
from .binaries import Binaries
from .pki import KeyPair, Pki, write_kubeconfig

# ClusterIPs are allocated from it; only pods on real nodes dial them, inside the nodes' own network
# namespaces (realnode.py), where kube-proxy translates them.
SERVICE_CIDR = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"  # the first address: the apiserver gives it to `kubernetes`
ISSUER = "https://kubernetes.default.svc.cluster.local"


class ControlPlaneError(RuntimeError):
    pass


ADDRESS_IN_USE = "address already in use"


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int

    @classmethod
    def allocate(cls) -> Ports:
        return cls(*(processes.free_port() for _ in range(5)))


class ControlPlane:
    """Start with :meth:`start`, stop with :meth:`stop`; ``admin_kubeconfig`` is system:masters."""

    def __init__(
        self,
        binaries: Binaries,
        workdir: Path,
        apiserver_extra_args: Sequence[str] = (),
        egress_socket: Path | None = None,
    ) -> None:
        self.bin = binaries
        self.dir = workdir
        # Where real nodes run (realnode.py), the API server reaches kubelets, pods and Services
        # through an HTTP CONNECT proxy on this UNIX socket (its `cluster` egress selection).
        self.egress_socket = egress_socket
        # Appended to kube-apiserver's flags (the operator benchmark adds an audit log).
        self.apiserver_extra_args = list(apiserver_extra_args)
        self.logs = workdir / "logs"
        self.ports = Ports.allocate()
        self.server = f"https://127.0.0.1:{self.ports.apiserver}"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._argv: dict[str, list[str]] = {}
        self._pki: Pki | None = None
        self.admin_kubeconfig = workdir / "kubeconfigs" / "admin.kubeconfig"
        self.startup_seconds: dict[str, float] = {}

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0, attempts: int = 3) -> None:
        """Start every component; a component that finds its port taken (another process on this
        machine bound it between ``free_port``'s check and the component's own bind: seen once in CI,
        with the holder unknown) makes the whole plane start again on fresh ports."""
        t0 = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                self._start(time.monotonic(), timeout)
            except ControlPlaneError as error:
                self.stop()
                if ADDRESS_IN_USE not in str(error) or attempt == attempts:
                    raise
                sys.stderr.write(
                    f"control plane: a port was taken, starting again on fresh ports:\n{error}\n"
                )
                self.ports = Ports.allocate()
                self.server = f"https://127.0.0.1:{self.ports.apiserver}"
            except BaseException:
                self.stop()
                raise
            else:
                break
        self.startup_seconds["total"] = time.monotonic() - t0

    def _start(self, t0: float, timeout: float) -> None:
        deadline = t0 + timeout
        pki = self._pki = Pki(self.dir / "pki")
        serving = pki.serving(
            "apiserver",
            dns=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            # The `kubernetes` Service's ClusterIP: pods on real nodes (realnode.py) dial it.
            ips=["127.0.0.1", KUBERNETES_SERVICE_IP],
        )
        sa_keys = pki.service_account_keys()
        # Aggregation-layer front proxy, on its own CA as kubeadm does. Without it every component's
        # delegated authentication logs "missing content for CA bundle" several times a second.
        front_proxy_pki = Pki(self.dir / "pki" / "front-proxy")
        front_proxy = front_proxy_pki.client("front-proxy-client")
        admin = pki.client("admin", ("system:masters",))
        write_kubeconfig(self.admin_kubeconfig, server=self.server, ca=pki.ca.cert, client=admin)
        kcm_kc = self._component_kubeconfig("kube-controller-manager", "system:kube-controller-manager")
        sched_kc = self._component_kubeconfig("kube-scheduler", "system:kube-scheduler")
        self.startup_seconds["pki"] = time.monotonic() - t0

        # etcd and the apiserver start together: the apiserver retries etcd until it answers.
        self._spawn("etcd", self._etcd_args())
        # What the API server presents to kubelets; system:masters so the kubelets' webhook authorizer
        # allows logs, exec and port-forward as it does for kubeadm's apiserver-kubelet-client.
        kubelet_client = pki.client("kube-apiserver-kubelet-client", ("system:masters",))
        self._spawn(
            "kube-apiserver",
            self._apiserver_args(serving, sa_keys, front_proxy_pki.ca.cert, front_proxy, kubelet_client),
        )
        self._wait_healthy("kube-apiserver", self.ports.apiserver, "/readyz", deadline, admin)
        self.startup_seconds["apiserver"] = time.monotonic() - t0

        # Both use the kube-system bootstrap RBAC roles the apiserver has just created.
        self._spawn("kube-controller-manager", self._controller_manager_args(kcm_kc, sa_keys))
        self._spawn("kube-scheduler", self._scheduler_args(sched_kc))
        self._wait_healthy("kube-controller-manager", self.ports.controller_manager, "/healthz", deadline)
        self._wait_healthy("kube-scheduler", self.ports.scheduler, "/healthz", deadline)
        # Healthy is not yet working: the serviceaccount controller creating `default` proves the
        # controller manager has synced its informers and is writing through RBAC.
        self._wait_default_service_account("default", deadline)
        self.startup_seconds["controllers"] = time.monotonic() - t0

    def stop(self) -> None:
        # Reverse order: clients first, so nothing logs a storm of errors about a vanished apiserver.
        for name in reversed(list(self._procs)):
            processes.stop(self._procs.pop(name), grace=5.0)

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone (SIGTERM, as an upgrade or a crash-looping static pod would); etcd,
        the controllers, the nodes and every pod keep running. :meth:`start_apiserver` brings it back."""
        processes.stop(self._procs.pop("kube-apiserver"), grace=5.0)

    def start_apiserver(self, timeout: float = 60.0) -> None:
        """Start kube-apiserver again with the flags it had; returns once it is ready."""
        self._procs["kube-apiserver"] = processes.spawn(
            self._argv["kube-apiserver"],
            log_path=self.logs / "kube-apiserver.log",
            env=self._env(),
            append=True,
        )
        assert self._pki is not None
        admin = self._pki.client("admin", ("system:masters",))
        self._wait_healthy(
            "kube-apiserver", self.ports.apiserver, "/readyz", time.monotonic() + timeout, admin
        )

    def assert_running(self) -> None:
        dead = {n: p.returncode for n, p in self._procs.items() if p.poll() is not None}
        if dead:
            tails = self._log_tails(dead)
            if ADDRESS_IN_USE in tails:
                tails += "\n--- listening sockets (who holds the port) ---\n" + _listeners()
            raise ControlPlaneError(f"control-plane process(es) exited: {dead}\n" + tails)

    def compact_etcd(self) -> int:
        """Compact etcd's history up to now, as the API server's own compactor does every 5 minutes
        (``--etcd-compaction-interval``); a watch from an older resourceVersion then gets 410 Gone.
        Returns the revision compacted to."""
        base = f"http://127.0.0.1:{self.ports.etcd_client}/v3/kv"
        latest = _etcd_json(f"{base}/range", {"key": base64.b64encode(b"/").decode()})
        revision = int(latest["header"]["revision"])
        _etcd_json(f"{base}/compaction", {"revision": str(revision), "physical": True})
        return revision

    # --- clients and credentials ----------------------------------------------------------------

    @property
    def ca_cert(self) -> Path:
        assert self._pki is not None
        return self._pki.ca.cert

    def client_credentials(self, user: str, groups: tuple[str, ...] = ()) -> KeyPair:
        """A client certificate and key for ``user`` (cert CN) in ``groups`` (cert O)."""
        assert self._pki is not None
        return self._pki.client(user, groups)

    def user_kubeconfig(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig authenticating as ``user`` (client cert CN) in ``groups`` (cert O)."""
        pair = self.client_credentials(user, groups)
        safe = user.replace(":", "_")
        return write_kubeconfig(
            self.dir / "kubeconfigs" / f"{safe}.kubeconfig", server=self.server, ca=self.ca_cert, client=pair
        )

    def impersonating_kubeconfig(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        """Admin credentials that act as ``user`` (kubeconfig ``as:``, like ``kubectl --as``)."""
        assert self._pki is not None
        admin = KeyPair(self._pki.dir / "client-admin.crt", self._pki.dir / "client-admin.key")
        safe = user.replace(":", "_")
        return write_kubeconfig(
            self.dir / "kubeconfigs" / f"as-{safe}.kubeconfig",
            server=self.server,
            ca=self.ca_cert,
            client=admin,
            impersonate=user,
            impersonate_groups=groups,
        )

    def api_client(self, kubeconfig: Path | None = None, pool_size: int = 16) -> k8s.ApiClient:
        """An explicit ApiClient for ``kubeconfig`` (admin by default); no global configuration."""
        configuration = k8s.Configuration()
        configuration.connection_pool_maxsize = pool_size
        api: k8s.ApiClient = new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig or self.admin_kubeconfig),
            client_configuration=configuration,
            persist_config=False,
        )
        return api

    def kubectl(
        self, *args: str, kubeconfig: Path | None = None, check: bool = False, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run our pinned kubectl; its discovery cache lives in the session dir, not in ~/.kube."""
        argv = [
            str(self.bin["kubectl"]),
            f"--kubeconfig={kubeconfig or self.admin_kubeconfig}",
            f"--cache-dir={self.dir / 'kubectl-cache'}",
            *args,
        ]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)

    # --- process arguments ----------------------------------------------------------------------

    def _component_kubeconfig(self, name: str, user: str) -> Path:
        assert self._pki is not None
        pair = self._pki.client(user)
        return write_kubeconfig(
            self.dir / "kubeconfigs" / f"{name}.kubeconfig", server=self.server, ca=self.ca_cert, client=pair
        )

    def _etcd_args(self) -> list[str]:
        client_url = f"http://127.0.0.1:{self.ports.etcd_client}"
        peer_url = f"http://127.0.0.1:{self.ports.etcd_peer}"
        return [
            str(self.bin["etcd"]),
            "--name=test",
            f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=test={peer_url}",
            # Test data is disposable: skipping fsync makes every write (pod status!) much cheaper.
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_args(
        self,
        serving: KeyPair,
        sa_keys: KeyPair,
        front_proxy_ca: Path,
        front_proxy: KeyPair,
        kubelet_client: KeyPair,
    ) -> list[str]:
        assert self._pki is not None
        egress: list[str] = []
        if self.egress_socket is not None:
            config = self.dir / "egress-selector.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "apiVersion": "apiserver.k8s.io/v1beta1",
                        "kind": "EgressSelectorConfiguration",
                        "egressSelections": [
                            {
                                "name": "cluster",
                                "connection": {
                                    "proxyProtocol": "HTTPConnect",
                                    "transport": {"uds": {"udsName": str(self.egress_socket)}},
                                },
                            }
                        ],
                    }
                )
            )
            egress = [f"--egress-selector-config-file={config}"]
        return [
            str(self.bin["kube-apiserver"]),
            f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports.apiserver}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={self._pki.ca.cert}",
            f"--cert-dir={self.dir / 'apiserver-certs'}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--service-account-issuer={ISSUER}",
            f"--service-account-key-file={sa_keys.cert}",
            f"--service-account-signing-key-file={sa_keys.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # The `kubernetes` Endpoints would get 127.0.0.1, which Endpoints validation rejects.
            "--endpoint-reconciler-type=none",
            # Reach node agents only via their InternalIP (127.0.0.1), never by resolving a hostname.
            "--kubelet-preferred-address-types=InternalIP",
            f"--requestheader-client-ca-file={front_proxy_ca}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={front_proxy.cert}",
            f"--proxy-client-key-file={front_proxy.key}",
            f"--kubelet-client-certificate={kubelet_client.cert}",
            f"--kubelet-client-key={kubelet_client.key}",
            *egress,
            "--profiling=false",
            *self.apiserver_extra_args,
        ]

    def _controller_manager_args(self, kubeconfig: Path, sa_keys: KeyPair) -> list[str]:
        assert self._pki is not None
        serving = self._pki.serving("kube-controller-manager", dns=["localhost"], ips=["127.0.0.1"])
        return [
            str(self.bin["kube-controller-manager"]),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports.controller_manager}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            "--leader-elect=false",  # one instance; skips the lease dance at start-up
            "--controllers=*",  # every default controller: job, garbage collector, namespace, SA, ...
            # Each controller acts as its own ServiceAccount, so RBAC is exercised as in a real cluster.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={sa_keys.key}",
            f"--root-ca-file={self._pki.ca.cert}",  # publishes kube-root-ca.crt for SA token volumes
            f"--cluster-signing-cert-file={self._pki.ca.cert}",
            f"--cluster-signing-key-file={self._pki.ca.key}",
            # Defaults (20 qps, 5 job workers) are sized for one slow cluster; benchmarks create
            # hundreds of Jobs and would measure client throttling instead of the operator.
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--concurrent-job-syncs=20",
            "--profiling=false",
        ]

    def _scheduler_args(self, kubeconfig: Path) -> list[str]:
        assert self._pki is not None
        serving = self._pki.serving("kube-scheduler", dns=["localhost"], ips=["127.0.0.1"])
        config = self.dir / "kube-scheduler.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubescheduler.config.k8s.io/v1",
                    "kind": "KubeSchedulerConfiguration",
                    "clientConnection": {"kubeconfig": str(kubeconfig), "qps": 200, "burst": 400},
                    "leaderElection": {"leaderElect": False},
                }
            )
        )
        return [
            str(self.bin["kube-scheduler"]),
            f"--config={config}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports.scheduler}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            "--profiling=false",
        ]

    # --- helpers --------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        self._argv[name] = argv
        self._procs[name] = processes.spawn(argv, log_path=self.logs / f"{name}.log", env=self._env())

    @staticmethod
    def _env() -> dict[str, str]:
        env = dict(os.environ)
        # Loopback is never proxied by Go, but be explicit in case a CI sets odd proxy variables.
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        return env

    def _wait_healthy(
        self, name: str, port: int, path: str, deadline: float, client_cert: KeyPair | None = None
    ) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        if client_cert is not None:
            context.load_cert_chain(str(client_cert.cert), str(client_cert.key))
        last = "no answer yet"
        while time.monotonic() < deadline:
            self.assert_running()
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=2)
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read().decode(errors="replace")
                if response.status == 200:
                    return
                last = f"HTTP {response.status}: {body[-500:]}"
            except OSError as exc:
                last = repr(exc)
            finally:
                conn.close()
            time.sleep(0.1)
        raise ControlPlaneError(f"{name} not healthy at {path}: {last}\n" + self._log_tails([name]))

    def _wait_default_service_account(self, namespace: str, deadline: float) -> None:
        with self.api_client() as api:
            core: Any = k8s.CoreV1Api(api)
            while time.monotonic() < deadline:
                self.assert_running()
                names = {sa.metadata.name for sa in core.list_namespaced_service_account(namespace).items}
                if "default" in names:
                    return
                time.sleep(0.1)
        raise ControlPlaneError(
            f"no default ServiceAccount in {namespace}\n" + self._log_tails(["kube-controller-manager"])
        )

    def _log_tails(self, names: Iterable[str]) -> str:
        return "\n".join(f"--- {n} log (tail) ---\n{processes.tail(self.logs / f'{n}.log')}" for n in names)


def _etcd_json(url: str, body: dict[str, object]) -> dict[str, Any]:
    """One call to etcd's JSON gateway of its v3 API (plain HTTP on loopback here)."""
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        decoded: dict[str, Any] = json.loads(answer.read())
    return decoded


def _listeners() -> str:
    """``ss -ltnp``: every TCP listener and its process, for a failure message."""
    try:
        return subprocess.run(["ss", "-ltnp"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return f"(ss failed: {error})"
