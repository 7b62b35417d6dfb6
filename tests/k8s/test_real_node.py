"""Pods as containers under a real kubelet: images, securityContext, Pod Security, logs, DNS, OOM kills.

What the node agent could never prove: these pods run from the images hack/build-images.sh built, under
runc, with their securityContext enforced by the kernel, and `kubectl logs` reads them through the kubelet.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from tests.support.k8s.binaries import pinned_versions
from tests.support.k8s.helpers import pod_spec, python_container, wait_for

from .conftest import GPU_RESOURCE, GPU_TOLERATION, Cluster

pytestmark = pytest.mark.k8s


def restricted_pod(name: str, image: str, code: str, **spec: Any) -> dict[str, Any]:
    """A pod running ``code`` with the image's Python, admitted by Pod Security `restricted`."""
    container = python_container(code, image=image, **spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": pod_spec(container, **spec),
    }


def wait_terminated(core: Any, namespace: str, name: str, timeout: float = 120) -> Any:
    """The container's terminated state once the pod has finished (Succeeded or Failed)."""

    def finished() -> Any:
        pod = core.read_namespaced_pod(name, namespace)
        if pod.status.phase in ("Succeeded", "Failed") and pod.status.container_statuses:
            return pod
        return None

    pod = wait_for(finished, timeout=timeout, what=f"pod {namespace}/{name} to finish", interval=0.3)
    return pod.status.container_statuses[0].state.terminated, pod


def test_nodes_register_ready_with_their_addresses_and_the_gpu(cluster: Cluster, core: Any) -> None:
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert set(nodes) == {"node-cpu", "node-gpu"}
    for name, node in nodes.items():
        conditions = {c.type: c.status for c in node.status.conditions}
        assert conditions["Ready"] == "True", (name, conditions)
        addresses = {a.type: a.address for a in node.status.addresses}
        assert addresses["InternalIP"] == cluster.nodes[name].ip
        # Reported by the real kubelet from the real runtime, not written by a test.
        assert node.status.node_info.container_runtime_version.startswith("containerd://")
        assert node.status.node_info.kubelet_version == pinned_versions()["KUBERNETES_VERSION"]
    gpu = nodes["node-gpu"]
    assert gpu.status.capacity[GPU_RESOURCE] == "1"
    assert any(t.key == GPU_RESOURCE and t.effect == "NoSchedule" for t in gpu.spec.taints)


PROBE = """
    import ctypes, json, os, pwd
    status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
    try:
        open("/probe", "w")
        root_writable = True
    except OSError:
        root_writable = False
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWUSER = 0x10000000
    unshare_allowed = libc.unshare(CLONE_NEWUSER) == 0
    print(json.dumps({
        "uid": os.getuid(), "gid": os.getgid(), "user": pwd.getpwuid(os.getuid()).pw_name,
        "home": os.environ.get("HOME"), "root_writable": root_writable,
        "tmp_writable": os.access("/tmp", os.W_OK),
        "cap_eff": status["CapEff"].strip(), "cap_prm": status["CapPrm"].strip(),
        "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
        "unshare_allowed": unshare_allowed,
        "hostname": os.uname().nodename,
    }))
"""


def test_restricted_pod_runs_from_the_built_image_and_kubectl_logs_reads_it(
    cluster: Cluster, core: Any, namespace: str
) -> None:
    image = cluster.images["trainer"]
    core.create_namespaced_pod(namespace, restricted_pod("probe", image, PROBE))
    terminated, pod = wait_terminated(core, namespace, "probe")
    assert terminated.exit_code == 0, cluster.kubectl("logs", "-n", namespace, "probe").stdout
    assert pod.spec.node_name == "node-cpu"
    assert pod.status.container_statuses[0].image_id  # the runtime resolved the imported image

    logs = cluster.kubectl("logs", "-n", namespace, "probe")
    assert logs.returncode == 0, logs.stderr
    seen = json.loads(logs.stdout.strip().splitlines()[-1])
    assert seen["uid"] == 1000 and seen["gid"] == 1000 and seen["user"] == "mnist"
    assert seen["home"] == "/tmp" and seen["tmp_writable"]
    assert not seen["root_writable"], "readOnlyRootFilesystem was not enforced"
    assert seen["cap_eff"] == seen["cap_prm"] == "0000000000000000", "capabilities were not dropped"
    assert seen["no_new_privs"] == "1"
    assert seen["seccomp"] == "2", "RuntimeDefault seccomp is not in filter mode"
    assert not seen["unshare_allowed"], "RuntimeDefault seccomp let unshare(CLONE_NEWUSER) through"
    assert seen["hostname"] == "probe"


def test_pod_security_restricted_refuses_a_pod_without_a_security_context(
    cluster: Cluster, namespace: str, tmp_path: Any
) -> None:
    bare = restricted_pod("bare", cluster.images["trainer"], "print('never')")
    bare["spec"].pop("securityContext")
    bare["spec"]["containers"][0].pop("securityContext")
    path = tmp_path / "bare.json"
    path.write_text(json.dumps(bare))
    refused = cluster.kubectl("apply", "-n", namespace, "-f", str(path))
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr


def test_services_and_cluster_dns_reach_pods_on_either_node(
    cluster: Cluster, core: Any, namespace: str
) -> None:
    image = cluster.images["trainer"]
    server = restricted_pod(
        "web",
        image,
        """
        import http.server, os
        os.makedirs("/tmp/site", exist_ok=True)
        open("/tmp/site/hello.txt", "w").write("hello from " + os.uname().nodename)
        os.chdir("/tmp/site")
        http.server.ThreadingHTTPServer(("", 8080), http.server.SimpleHTTPRequestHandler).serve_forever()
        """,
        container={
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        },
    )
    server["metadata"]["labels"] = {"app": "web"}
    core.create_namespaced_pod(namespace, server)
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    wait_for(
        lambda: any(
            c.type == "Ready" and c.status == "True"
            for c in core.read_namespaced_pod("web", namespace).status.conditions or []
        ),
        timeout=60,
        what="the web pod to be Ready (its readiness probe run by the kubelet)",
    )
    client_code = f"""
        import json, ssl, urllib.request
        web = "http://web.{namespace}.svc.cluster.local/hello.txt"
        page = urllib.request.urlopen(web, timeout=10).read().decode()
        ca = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
        context = ssl.create_default_context(cafile=ca)
        api = "https://kubernetes.default.svc/version"
        version = json.load(urllib.request.urlopen(api, context=context, timeout=10))
        print(page)
        print(version["gitVersion"])
    """
    # One client beside the server, one across the wire on the GPU node.
    for name, extra in (
        ("client-cpu", {}),
        ("client-gpu", {"nodeSelector": {"nvidia.com/gpu.present": "true"}, "tolerations": [GPU_TOLERATION]}),
    ):
        core.create_namespaced_pod(namespace, restricted_pod(name, image, client_code, **extra))
    for name, node in (("client-cpu", "node-cpu"), ("client-gpu", "node-gpu")):
        terminated, pod = wait_terminated(core, namespace, name)
        logs = cluster.kubectl("logs", "-n", namespace, name).stdout
        assert terminated.exit_code == 0, logs
        assert pod.spec.node_name == node
        page, version = logs.strip().splitlines()[-2:]
        assert page == "hello from web"
        assert version.startswith("v1.")


def test_a_name_outside_the_cluster_does_not_resolve(cluster: Cluster, core: Any, namespace: str) -> None:
    code = """
        import socket
        try:
            print(socket.getaddrinfo("pypi.org", 443))
        except socket.gaierror as exc:
            print("unresolved:", exc.errno)
    """
    core.create_namespaced_pod(namespace, restricted_pod("resolver", cluster.images["trainer"], code))
    terminated, _ = wait_terminated(core, namespace, "resolver")
    logs = cluster.kubectl("logs", "-n", namespace, "resolver").stdout
    assert terminated.exit_code == 0 and "unresolved:" in logs, logs


def test_a_container_over_its_memory_limit_is_oom_killed_by_the_kernel(
    cluster: Cluster, core: Any, namespace: str
) -> None:
    code = """
        chunks = []
        while True:
            chunks.append(bytearray(16 * 1024 * 1024))
    """
    limits = {
        "resources": {
            "limits": {"memory": "64Mi", "cpu": "500m"},
            "requests": {"memory": "64Mi", "cpu": "100m"},
        }
    }
    core.create_namespaced_pod(
        namespace, restricted_pod("hog", cluster.images["trainer"], code, container=limits)
    )
    terminated, _ = wait_terminated(core, namespace, "hog")
    assert terminated.reason == "OOMKilled"
    assert terminated.exit_code == 137


def test_a_gpu_pod_lands_on_the_gpu_node(cluster: Cluster, core: Any, namespace: str) -> None:
    pod = restricted_pod(
        "wants-gpu",
        cluster.images["trainer"],
        "print('on a gpu node')",
        container={"resources": {"limits": {GPU_RESOURCE: "1"}}},
        tolerations=[GPU_TOLERATION],
    )
    core.create_namespaced_pod(namespace, pod)
    terminated, finished = wait_terminated(core, namespace, "wants-gpu")
    assert terminated.exit_code == 0
    assert finished.spec.node_name == "node-gpu"


def test_deleting_a_pod_sends_sigterm_through_the_kubelet(
    cluster: Cluster, core: Any, namespace: str
) -> None:
    code = """
        import signal, sys, time
        def stop(signum, frame):
            print("got signal", signum, flush=True)
            time.sleep(0.5)
            sys.exit(143)
        signal.signal(signal.SIGTERM, stop)
        print("ready", flush=True)
        while True:
            time.sleep(0.1)
    """
    core.create_namespaced_pod(namespace, restricted_pod("sleeper", cluster.images["trainer"], code))
    wait_for(
        lambda: "ready" in cluster.kubectl("logs", "-n", namespace, "sleeper").stdout,
        timeout=60,
        what="the sleeper to start",
    )
    # `kubectl logs -f` follows the container through the kubelet until the container exits.
    follower = subprocess.Popen(
        [
            str(cluster.plane.bin["kubectl"]),
            f"--kubeconfig={cluster.plane.admin_kubeconfig}",
            "logs",
            "-f",
            "-n",
            namespace,
            "sleeper",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(1)
        started = time.monotonic()
        core.delete_namespaced_pod("sleeper", namespace, grace_period_seconds=20)
        output, _ = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert "got signal 15" in output
    assert time.monotonic() - started < 15, (
        "the container was killed at the grace period, not stopped by SIGTERM"
    )
