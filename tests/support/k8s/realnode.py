"""Real Kubernetes nodes on this machine: kubelet, containerd, runc, CNI bridge and kube-proxy.

Each node lives in namespaces the run creates, so nothing of it touches the host:

- **network**: a network namespace per node (``unshare --net``). The pods' bridge, their veths, the
  kube-proxy rules and every route live and die with it. Two nodes are joined by one veth pair (the
  "wire", 10.250.0.0/24), each routing the other's pod CIDR over it; nothing connects a node to the
  host's network. The kubelet, kube-proxy and pods reach the API server through :mod:`.netbridge`
  (a TCP listener in the node's namespace piping into a UNIX socket that a host-side pipe connects to
  the API server on 127.0.0.1), and the API server reaches kubelets, pods and Services through an HTTP
  CONNECT proxy inside node 0's namespace, configured as its ``cluster`` egress selection.
- **mounts**: a private mount namespace per node (``unshare --mount --propagation private``) where
  ``/var/lib``, ``/var/log`` and ``/run`` are the run's own folders (the kubelet, containerd and CNI
  write to fixed paths there), and the three sysctls the kubelet checks with ``protectKernelDefaults``
  are covered by files holding the values it expects -- it never writes a host sysctl.
- **cgroups**: the kubelet's ``cgroupRoot`` is nested inside this process's memory cgroup (and the same
  path in the other v1 hierarchies, removed again at stop); containerd runs with
  ``restrict_oom_score_adj`` because nothing here may lower ``oom_score_adj``.
- **DNS**: CoreDNS, built from its Go module, serves ``cluster.local`` from the API server with only the
  ``kubernetes`` plugin: no forwarder, so pods resolve nothing outside the cluster.
- **images**: imported from the OCI archives ``hack/build-images.sh`` builds; nothing is ever pulled.

Everything started here is ended by PID at :meth:`RealNodes.stop`, including the containers (every
process in the nodes' cgroups) and containerd's shims.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.support.cgroups import CGROUP_ROOT, hierarchies, make_folders, memory_cgroup

from . import processes
from .binaries import Binaries
from .controlplane import SERVICE_CIDR, ControlPlane
from .pki import write_kubeconfig

REPO = Path(__file__).resolve().parents[3]
WIRE = ipaddress.ip_network("10.250.0.0/24")
POD_CIDRS = ipaddress.ip_network("10.244.0.0/16")
CLUSTER_DOMAIN = "cluster.local"
# The values kubelet's protectKernelDefaults requires (pkg/kubelet/cm/container_manager_linux.go).
KERNEL_DEFAULTS = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}
COREDNS_ROLE = "mnist-tests:coredns"


class RealNodeError(RuntimeError):
    pass


@dataclass(frozen=True)
class NodeSpec:
    """What a test asks of a node; addresses follow from its index."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    # Extended resources advertised through the node status, as Kubernetes documents for resources
    # no device plugin manages (how `nvidia.com/gpu` appears on a node without a GPU here).
    extended_resources: dict[str, str] = field(default_factory=dict)


def _run(argv: Sequence[str], *, what: str, timeout: float = 60.0) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RealNodeError(f"{what} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result.stdout


class RealNode:
    """One node: its namespaces' holder, containerd, kubelet and kube-proxy."""

    def __init__(self, spec: NodeSpec, index: int, root: Path, plane: ControlPlane, bins: Binaries) -> None:
        self.spec = spec
        self.name = spec.name
        self.index = index
        self.dir = root / spec.name
        self.plane = plane
        self.bin = bins
        self.ip = str(WIRE.network_address + index + 1)
        self.pod_cidr = ipaddress.ip_network(f"10.244.{index}.0/24")
        self.gateway = str(self.pod_cidr.network_address + 1)
        self.cgroup_root = f"{memory_cgroup().rstrip('/')}/mnist-{os.getpid()}-{spec.name}"
        self.containerd_socket = self.dir / "containerd.sock"
        self.holder: subprocess.Popen[bytes] | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._created_cgroups: list[Path] = []

    # --- namespaces ------------------------------------------------------------------------------

    def create_namespaces(self) -> None:
        for sub in ("var-lib", "var-log", "run", "sysctl", "cni/net.d", "containerd", "kubelet", "logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        for key, value in KERNEL_DEFAULTS.items():
            (self.dir / "sysctl" / key.replace("/", ".")).write_text(value + "\n")
        # The holder keeps both namespaces alive; every component joins them with nsenter.
        self.holder = processes.spawn(
            ["unshare", "--net", "--mount", "--propagation", "private", "--", "sleep", "infinity"],
            log_path=self.dir / "logs" / "holder.log",
        )
        deadline = time.monotonic() + 10
        while self._own_net_ns() == _ns_inode(os.getpid(), "net"):
            if time.monotonic() > deadline or self.holder.poll() is not None:
                raise RealNodeError(f"{self.name}: unshare did not create namespaces")
            time.sleep(0.02)
        covers = "\n".join(
            f"mount --bind {self.dir / 'sysctl' / key.replace('/', '.')} /proc/sys/{key}"
            for key in KERNEL_DEFAULTS
        )
        self.nsenter_sh(
            f"""
            mount --bind {self.dir / "var-lib"} /var/lib
            mount --bind {self.dir / "var-log"} /var/log
            mount --bind {self.dir / "run"} /run
            {covers}
            ip link set lo up
            echo 1 > /proc/sys/net/ipv4/ip_forward
            # Service IPs are only ever DNAT targets; nothing may route them anywhere.
            ip route add blackhole {SERVICE_CIDR}
            """,
            what="mount and network set-up",
        )

    def _own_net_ns(self) -> int:
        assert self.holder is not None
        try:
            return _ns_inode(self._holder_pid(), "net")
        except (FileNotFoundError, ProcessLookupError):
            return _ns_inode(os.getpid(), "net")

    def _holder_pid(self) -> int:
        """The PID of ``sleep`` inside unshare (setpriv and unshare exec, so it is the same PID)."""
        assert self.holder is not None
        return self.holder.pid

    def nsenter(self, *argv: str) -> list[str]:
        return ["nsenter", "-t", str(self._holder_pid()), "--net", "--mount", "--", *argv]

    def nsenter_sh(self, script: str, *, what: str) -> str:
        return _run(self.nsenter("sh", "-ec", textwrap.dedent(script)), what=f"{self.name}: {what}")

    def add_address(self, interface: str) -> None:
        self.nsenter_sh(
            f"ip addr add {self.ip}/{WIRE.prefixlen} dev {interface}\nip link set {interface} up",
            what="node address",
        )

    # --- components ------------------------------------------------------------------------------

    def spawn(self, name: str, argv: Sequence[str]) -> None:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.dir)}
        self._procs[name] = processes.spawn(
            self.nsenter(*argv), log_path=self.dir / "logs" / f"{name}.log", env=env
        )

    def start_containerd(self) -> None:
        config = self.dir / "containerd" / "config.toml"
        state = self.dir / "containerd"
        config.write_text(
            textwrap.dedent(
                f"""\
                version = 2
                root = "{state / "root"}"
                state = "{state / "state"}"
                disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
                [grpc]
                  address = "{self.containerd_socket}"
                [plugins."io.containerd.grpc.v1.cri"]
                  sandbox_image = "{PAUSE_IMAGE}"
                  # runc cannot lower oom_score_adj here (no CAP_SYS_RESOURCE): keep the kubelet's
                  # requested values within what the process may set.
                  restrict_oom_score_adj = true
                  enable_selinux = false
                  [plugins."io.containerd.grpc.v1.cri".containerd]
                    snapshotter = "overlayfs"
                    default_runtime_name = "runc"
                    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
                      runtime_type = "io.containerd.runc.v2"
                      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
                        BinaryName = "/usr/sbin/runc"
                        SystemdCgroup = false
                  [plugins."io.containerd.grpc.v1.cri".cni]
                    bin_dir = "/usr/lib/cni"
                    conf_dir = "{self.dir / "cni" / "net.d"}"
                [plugins."io.containerd.internal.v1.opt"]
                  path = "{state / "opt"}"
                """
            )
        )
        self.spawn("containerd", ["containerd", f"--config={config}"])
        self._wait(self.containerd_socket.exists, "containerd's socket", 30)

    def write_cni_config(self) -> None:
        conflist = {
            "cniVersion": "0.4.0",
            "name": "mnist-pods",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": False,
                    # A pod reaching itself through a Service comes back through the same port.
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": str(self.pod_cidr), "gateway": self.gateway}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                }
            ],
        }
        (self.dir / "cni" / "net.d" / "10-mnist-pods.conflist").write_text(json.dumps(conflist, indent=2))

    def seed_images(self, golden: Path) -> None:
        """Start from a copy of the image store :func:`image_store` filled once: hard links for the
        content and the unpacked layers (containerd never changes either once written; a container
        writes to a new snapshot of its own), real copies of the metadata databases it writes to."""
        root = self.dir / "containerd" / "root"
        if subprocess.run(["cp", "-al", str(golden), str(root)], check=False).returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(golden, root, symlinks=True)  # another filesystem: no hard links
        for database in root.rglob("*.db"):
            private = database.with_name(database.name + ".copy")
            shutil.copy2(database, private)
            private.replace(database)

    def start_kubelet(self, dns_ip: str) -> None:
        plane = self.plane
        credentials = plane.client_credentials(f"system:node:{self.name}", ("system:nodes",))
        kubeconfig = write_kubeconfig(
            self.dir / "kubelet.kubeconfig", server=self.api_url, ca=plane.ca_cert, client=credentials
        )
        resolv = self.dir / "resolv.conf"
        # Pods with dnsPolicy Default get this: a resolver on the node that answers only cluster names.
        resolv.write_text(f"nameserver {dns_ip}\n")
        config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This machine is cgroup v1 hybrid; kubelet 1.35+ refuses v1 unless told otherwise.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "cgroupsPerQOS": True,
            "enforceNodeAllocatable": ["pods"],
            # The node's iptables rules are kube-proxy's alone (and only ever in the node's namespace).
            "makeIPTablesUtilChains": False,
            # Check the host's kernel settings, never change them (they are covered, see above).
            "protectKernelDefaults": True,
            "failSwapOn": False,
            "resolvConf": str(resolv),
            "clusterDNS": [dns_ip],
            "clusterDomain": CLUSTER_DOMAIN,
            "address": self.ip,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(plane.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "registerWithTaints": self.spec.taints,
            "serializeImagePulls": False,
            # The test machine's disk is shared with everything else: never evict or GC our images.
            "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "maxPods": 110,
            "nodeStatusUpdateFrequency": "4s",
            "nodeStatusReportFrequency": "10s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "20s",
            "podPidsLimit": 4096,
            "shutdownGracePeriod": "0s",
        }
        config_path = self.dir / "kubelet-config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        labels = ",".join(f"{k}={v}" for k, v in self.spec.labels.items())
        argv = [
            str(self.bin["kubelet"]),
            f"--config={config_path}",
            f"--kubeconfig={kubeconfig}",
            f"--hostname-override={self.name}",
            f"--node-ip={self.ip}",
            f"--root-dir={self.dir / 'kubelet'}",
            f"--cert-dir={self.dir / 'kubelet' / 'pki'}",
            "--v=1",
        ]
        if labels:
            argv.append(f"--node-labels={labels}")
        self.create_cgroups()
        self.spawn("kubelet", argv)

    def start_kube_proxy(self) -> None:
        plane = self.plane
        credentials = plane.client_credentials("system:kube-proxy")
        kubeconfig = write_kubeconfig(
            self.dir / "kube-proxy.kubeconfig", server=self.api_url, ca=plane.ca_cert, client=credentials
        )
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": self.name,
            "mode": "iptables",
            "clusterCIDR": str(POD_CIDRS),
            "bindAddress": self.ip,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # Node-local conntrack limits are global sysctls outside the init namespace: leave them.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"localhostNodePorts": False, "syncPeriod": "10s", "minSyncPeriod": "0s"},
        }
        path = self.dir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        self.spawn("kube-proxy", [str(self.bin["kube-proxy"]), f"--config={path}"])

    @property
    def api_url(self) -> str:
        """The API server as the node sees it: a netbridge listener on the node's own loopback."""
        return f"https://127.0.0.1:{self.plane.ports.apiserver}"

    # --- teardown --------------------------------------------------------------------------------

    def _cgroup_dirs(self) -> list[Path]:
        return [hierarchy / self.cgroup_root.lstrip("/") for hierarchy in hierarchies()]

    def create_cgroups(self) -> None:
        """Create the kubelet's cgroupRoot in every hierarchy (it refuses to start without), noting each
        folder made so :meth:`remove_cgroups` takes exactly those away again."""
        self._created_cgroups += make_folders(self.cgroup_root)

    def kill_containers(self) -> None:
        """SIGKILL every process in the node's cgroups (its containers), then containerd's shims."""
        for _ in range(3):
            pids = set()
            for leaf in self._cgroup_dirs():
                for procs in leaf.rglob("cgroup.procs") if leaf.exists() else ():
                    with contextlib.suppress(OSError):
                        pids.update(int(p) for p in procs.read_text().split())
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if not pids:
                break
            time.sleep(0.2)
        marker = str(self.containerd_socket).encode()
        for pid in _pids_whose_cmdline_contains(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        for name in ("kube-proxy", "kubelet"):
            if name in self._procs:
                processes.stop(self._procs.pop(name), grace=5.0)
        self.kill_containers()
        for name in reversed(list(self._procs)):
            processes.stop(self._procs.pop(name), grace=5.0)
        self.kill_containers()
        if self.holder is not None:
            processes.stop(self.holder, grace=1.0)
            self.holder = None

    def remove_cgroups(self) -> None:
        for leaf in self._cgroup_dirs():
            if leaf.exists():
                for path in sorted((p for p in leaf.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    with contextlib.suppress(OSError):
                        path.rmdir()
                with contextlib.suppress(OSError):
                    leaf.rmdir()
        for path in sorted(self._created_cgroups, key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                path.rmdir()

    def assert_running(self) -> None:
        dead = {n: p.returncode for n, p in self._procs.items() if p.poll() is not None}
        if dead:
            tails = "\n".join(f"--- {n} ---\n{processes.tail(self.dir / 'logs' / f'{n}.log')}" for n in dead)
            raise RealNodeError(f"{self.name}: exited {dead}\n{tails}")

    def _wait(self, probe: Any, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not probe():
            self.assert_running()
            if time.monotonic() > deadline:
                raise RealNodeError(f"{self.name}: timed out waiting for {what}")
            time.sleep(0.1)

    def log(self, name: str) -> Path:
        return self.dir / "logs" / f"{name}.log"


PAUSE_IMAGE = "mnist-operator.local/pause:1.0"


def _ns_inode(pid: int, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def _pids_whose_cmdline_contains(marker: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def image_store(archives: Iterable[Path], cache: Path) -> Path:
    """A containerd root holding these image archives, imported and unpacked once and kept in the cache
    (``<cache>/containerd-roots/<key>/root``): importing the trainer image alone takes half a minute, a
    copy of the store made of hard links a few seconds. Only the newest store is kept."""
    archives = sorted(archives)
    key = hashlib.sha256(
        "\n".join(f"{a}:{a.stat().st_size}:{a.stat().st_mtime_ns}" for a in archives).encode()
    ).hexdigest()[:16]
    stores = cache / "containerd-roots"
    store = stores / key
    if (store / "complete").exists():
        return store / "root"
    stores.mkdir(parents=True, exist_ok=True)
    with open(stores / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (store / "complete").exists():
            return store / "root"
        work = Path(tempfile.mkdtemp(prefix=".filling-", dir=stores))
        socket = work / "containerd.sock"
        config = work / "config.toml"
        # No CRI, no containers: this containerd only imports. Its own mount namespace, so the overlay
        # mounts of unpacking never appear on the host.
        config.write_text(
            f'version = 2\nroot = "{work / "root"}"\nstate = "{work / "state"}"\n'
            f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "{socket}"\n'
        )
        daemon = processes.spawn(
            ["unshare", "--mount", "--propagation", "private", "--", "containerd", f"--config={config}"],
            log_path=work / "containerd.log",
        )
        try:
            deadline = time.monotonic() + 30
            while not socket.exists():
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise RealNodeError(
                        f"containerd for the image store: {processes.tail(work / 'containerd.log')}"
                    )
                time.sleep(0.05)
            for archive in archives:
                _run(
                    ["ctr", f"--address={socket}", "-n", "k8s.io", "images", "import", str(archive)],
                    what=f"ctr images import {archive.name}",
                    timeout=600,
                )
        finally:
            processes.stop(daemon, grace=10.0)
        shutil.rmtree(work / "state", ignore_errors=True)
        (work / "complete").touch()
        for old in stores.iterdir():
            if old.is_dir() and old.name != work.name:
                shutil.rmtree(old, ignore_errors=True)
        work.rename(store)
    return store / "root"


class RealNodes:
    """The nodes of one cluster, their wire, the API pipes, CoreDNS; start/stop as one."""

    def __init__(
        self,
        plane: ControlPlane,
        bins: Binaries,
        root: Path,
        specs: Sequence[NodeSpec],
        images: Sequence[Path],
        cache: Path,
    ) -> None:
        self.plane = plane
        self.bin = bins
        self.root = root
        self.nodes = [RealNode(spec, i, root, plane, bins) for i, spec in enumerate(specs)]
        self.images = images
        self.cache = cache
        self.dns_ip = self.nodes[0].ip
        self._pipes: list[subprocess.Popen[bytes]] = []
        self._dns: subprocess.Popen[bytes] | None = None
        self.startup_seconds: dict[str, float] = {}

    def __getitem__(self, name: str) -> RealNode:
        return next(node for node in self.nodes if node.name == name)

    def start(self, timeout: float = 180.0) -> None:
        t0 = time.monotonic()
        try:
            self._start(t0 + timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds["total"] = time.monotonic() - t0

    def _start(self, deadline: float) -> None:
        t0 = time.monotonic()
        for node in self.nodes:
            node.create_namespaces()
        self._wire()
        self._start_pipes()
        golden = image_store(self.images, self.cache)
        self.startup_seconds["image store"] = time.monotonic() - t0
        for node in self.nodes:
            node.seed_images(golden)
            node.write_cni_config()
            node.start_containerd()
        self.startup_seconds["namespaces+containerd"] = time.monotonic() - t0
        self._publish_api_endpoint()
        self._start_coredns()
        for node in self.nodes:
            node.start_kubelet(self.dns_ip)
            node.start_kube_proxy()
        self._wait_ready(deadline)
        self.startup_seconds["ready"] = time.monotonic() - t0

    def _wire(self) -> None:
        first = self.nodes[0]
        if len(self.nodes) == 1:
            first.nsenter_sh("ip link add eth0 type dummy", what="node interface")
            first.add_address("eth0")
            return
        for node in self.nodes[1:]:
            # One wire per extra node, all on node 0's side of a bridge would be the general case;
            # two nodes need only a veth pair.
            first.nsenter_sh(
                f"ip link add eth0 type veth peer name eth0 netns {node._holder_pid()}", what="wire"
            )
        for node in self.nodes:
            node.add_address("eth0")
        for node in self.nodes:
            routes = "\n".join(
                f"ip route add {other.pod_cidr} via {other.ip} dev eth0"
                for other in self.nodes
                if other is not node
            )
            node.nsenter_sh(routes, what="routes to the other pod CIDRs")

    def _start_pipes(self) -> None:
        """API server <-> nodes; see :mod:`.netbridge`."""
        sockets = self.root / "sockets"
        sockets.mkdir(parents=True, exist_ok=True)
        api_socket = sockets / "apiserver.sock"
        port = self.plane.ports.apiserver
        # Run as a file: nsenter --mount starts in the namespace's root folder, where no package is found.
        python = [sys.executable, str(Path(__file__).with_name("netbridge.py"))]
        host = processes.spawn(
            [*python, "unix-to-tcp", str(api_socket), f"127.0.0.1:{port}"],
            log_path=self.root / "netbridge-host.log",
        )
        self._pipes.append(host)
        for node in self.nodes:
            rules = ["tcp-to-unix", f"0.0.0.0:{port}", str(api_socket)]
            if node is self.nodes[0]:
                assert self.plane.egress_socket is not None
                rules += [";", "connect-proxy", str(self.plane.egress_socket)]
            pipe = processes.spawn(
                node.nsenter(*python, *rules), log_path=node.dir / "logs" / "netbridge.log"
            )
            self._pipes.append(pipe)
        for pipe, log in zip(
            self._pipes,
            [self.root / "netbridge-host.log", *(n.dir / "logs" / "netbridge.log" for n in self.nodes)],
            strict=True,
        ):
            deadline = time.monotonic() + 15
            while "netbridge: ready" not in (log.read_text() if log.exists() else ""):
                if pipe.poll() is not None or time.monotonic() > deadline:
                    raise RealNodeError(f"netbridge did not start: {processes.tail(log)}")
                time.sleep(0.05)

    def _publish_api_endpoint(self) -> None:
        """Pods reach the API server as the `kubernetes` Service; its one endpoint is node 0's pipe.

        The control plane runs with ``--endpoint-reconciler-type=none`` (its own address is loopback),
        so the EndpointSlice is written here, as a cluster whose API server sits behind a proxy does.
        """
        with self.plane.api_client() as api:
            discovery: Any = k8s.DiscoveryV1Api(api)
            body = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "kubernetes",
                    "labels": {
                        "kubernetes.io/service-name": "kubernetes",
                        "endpointslice.kubernetes.io/managed-by": "mnist-operator-tests",
                    },
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [self.nodes[0].ip], "conditions": {"ready": True}}],
                "ports": [{"name": "https", "port": self.plane.ports.apiserver, "protocol": "TCP"}],
            }
            try:
                discovery.create_namespaced_endpoint_slice("default", body)
            except ApiException as exc:
                if exc.status != 409:
                    raise

    def _start_coredns(self) -> None:
        first = self.nodes[0]
        plane = self.plane
        with plane.api_client() as api:
            rbac: Any = k8s.RbacAuthorizationV1Api(api)
            role = {
                "metadata": {"name": COREDNS_ROLE},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["services", "namespaces", "pods"],
                        "verbs": ["list", "watch"],
                    },
                    {
                        "apiGroups": ["discovery.k8s.io"],
                        "resources": ["endpointslices"],
                        "verbs": ["list", "watch"],
                    },
                ],
            }
            binding = {
                "metadata": {"name": COREDNS_ROLE},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": COREDNS_ROLE,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:coredns"}
                ],
            }
            for create, body in (
                (rbac.create_cluster_role, role),
                (rbac.create_cluster_role_binding, binding),
            ):
                try:
                    create(body)
                except ApiException as exc:
                    if exc.status != 409:
                        raise
        credentials = plane.client_credentials("system:coredns")
        kubeconfig = write_kubeconfig(
            self.root / "coredns.kubeconfig", server=first.api_url, ca=plane.ca_cert, client=credentials
        )
        corefile = self.root / "Corefile"
        # Only the kubernetes plugin: a name outside cluster.local gets NXDOMAIN/SERVFAIL, never a
        # query to a resolver outside the run.
        corefile.write_text(
            textwrap.dedent(
                f"""\
                .:53 {{
                    bind {self.dns_ip}
                    errors
                    health 127.0.0.1:8080
                    ready 127.0.0.1:8181
                    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
                        kubeconfig {kubeconfig}
                        pods insecure
                        fallthrough in-addr.arpa ip6.arpa
                    }}
                }}
                """
            )
        )
        self._dns = processes.spawn(
            first.nsenter(str(self.bin["coredns"]), "-conf", str(corefile)),
            log_path=first.dir / "logs" / "coredns.log",
        )

    def _wait_ready(self, deadline: float) -> None:
        names = {node.name for node in self.nodes}
        with self.plane.api_client() as api:
            core: Any = k8s.CoreV1Api(api)
            advertised: set[str] = set()
            while True:
                for node in self.nodes:
                    node.assert_running()
                ready = set()
                for item in core.list_node().items:
                    if item.metadata.name not in names:
                        continue
                    conditions = {c.type: c.status for c in item.status.conditions or []}
                    if conditions.get("Ready") == "True":
                        ready.add(item.metadata.name)
                    if item.metadata.name not in advertised:
                        spec = self[item.metadata.name].spec
                        if spec.extended_resources:
                            patch = [
                                {"op": "add", "path": f"/status/capacity/{k.replace('/', '~1')}", "value": v}
                                for k, v in spec.extended_resources.items()
                            ]
                            # A list body goes out as a JSON patch (application/json-patch+json).
                            core.patch_node_status(item.metadata.name, patch)
                        advertised.add(item.metadata.name)
                if ready == names:
                    return
                if time.monotonic() > deadline:
                    tails = "\n".join(processes.tail(n.log("kubelet"), 20) for n in self.nodes)
                    raise RealNodeError(f"nodes not Ready: {sorted(names - ready)}\n{tails}")
                time.sleep(0.2)

    def container_pids(self, container_ids: Iterable[str]) -> list[int]:
        """PIDs in the cgroups of these containers (the kubelet names each after its container's ID)."""
        wanted = set(container_ids)
        pids: list[int] = []
        for node in self.nodes:
            memory = CGROUP_ROOT / "memory" / node.cgroup_root.lstrip("/")
            for folder in memory.rglob("*"):
                if folder.name in wanted and folder.is_dir():
                    pids += [int(p) for p in (folder / "cgroup.procs").read_text().split()]
        return pids

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
        # Newest first: a later node's folder sits inside parents the first node created.
        for node in reversed(self.nodes):
            node.remove_cgroups()
        if self._dns is not None:
            processes.stop(self._dns, grace=2.0)
            self._dns = None
        for pipe in self._pipes:
            processes.stop(pipe, grace=1.0)
        self._pipes.clear()
