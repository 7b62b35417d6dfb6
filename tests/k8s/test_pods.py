"""What a pod's process sees on a test node: env, volumes, init containers, termination."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import GPU_TOLERATION, NodeAgents
from .helpers import make_claim, pod_manifest, python_container, wait_for

pytestmark = pytest.mark.k8s


def wait_phase(core: Any, namespace: str, name: str, phases: tuple[str, ...], timeout: float = 60) -> Any:
    return wait_for(
        lambda: (p := core.read_namespaced_pod(name, namespace)) and p.status.phase in phases and p,
        timeout=timeout,
        what=f"pod {name} to reach {phases}",
    )


def test_env_from_downward_api_secret_and_config_map(core: Any, agents: NodeAgents, namespace: str) -> None:
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"password": "s3cr3t", "user": "mnist"}}
    )
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}, "data": {"EPOCHS": "3"}})
    code = (
        "import json, os, pathlib\n"
        "keys = ['POD_NAME', 'POD_NAMESPACE', 'POD_UID', 'NODE', 'POD_IP', 'APP', 'PASSWORD', 'EPOCHS',\n"
        "        'GREETING', 'CFG_EPOCHS']\n"
        "out = {k: os.environ.get(k) for k in keys}\n"
        "out['file'] = pathlib.Path(os.environ['CREDS_DIR'], 'user').read_text()\n"
        "out['labels'] = pathlib.Path('/etc/podinfo/labels').read_text()\n"
        "print(json.dumps(out))\n"
    )

    def field(path: str) -> dict[str, Any]:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

    container = python_container(
        code,
        env=[
            {"name": "POD_NAME", **field("metadata.name")},
            {"name": "POD_NAMESPACE", **field("metadata.namespace")},
            {"name": "POD_UID", **field("metadata.uid")},
            {"name": "NODE", **field("spec.nodeName")},
            {"name": "POD_IP", **field("status.podIP")},
            {"name": "APP", **field("metadata.labels['app']")},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "GREETING", "value": "hello $(POD_NAME)"},
            {"name": "CREDS_DIR", "value": "/etc/creds"},
        ],
        envFrom=[
            {"configMapRef": {"name": "settings"}},
            {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
        ],
        volumeMounts=[
            {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
            {"name": "podinfo", "mountPath": "/etc/podinfo"},
        ],
    )
    manifest = pod_manifest(
        "env-probe",
        container,
        volumes=[
            {"name": "creds", "secret": {"secretName": "creds"}},
            {
                "name": "podinfo",
                "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
            },
        ],
    )
    manifest["metadata"]["labels"] = {"app": "mnist"}
    created = core.create_namespaced_pod(namespace, manifest)

    pod = wait_phase(core, namespace, "env-probe", ("Succeeded", "Failed"))
    assert pod.status.phase == "Succeeded", agents.logs(namespace, "env-probe")
    seen = json.loads(agents.logs(namespace, "env-probe"))
    assert seen == {
        "POD_NAME": "env-probe",
        "POD_NAMESPACE": namespace,
        "POD_UID": created.metadata.uid,
        "NODE": pod.spec.node_name,
        "POD_IP": "127.0.0.1",
        "APP": "mnist",
        "PASSWORD": "s3cr3t",
        "EPOCHS": "3",
        "GREETING": "hello env-probe",
        "CFG_EPOCHS": "3",
        "file": "mnist",
        "labels": 'app="mnist"',
    }


def test_pods_sharing_a_claim_see_each_others_files(core: Any, agents: NodeAgents, namespace: str) -> None:
    pv_name = make_claim(core, namespace, "shared")
    try:
        volume = [{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}]
        mount = [{"name": "data", "mountPath": "/data"}]
        writer = python_container("open('/data/msg', 'w').write('from the writer')", volumeMounts=mount)
        # The reader runs on the other node: claims are shared cluster-wide, not per node.
        reader = python_container("print(open('/data/msg').read())", volumeMounts=mount)
        core.create_namespaced_pod(
            namespace,
            pod_manifest(
                "writer", writer, volumes=volume, nodeSelector={"kubernetes.io/hostname": "node-cpu"}
            ),
        )
        assert wait_phase(core, namespace, "writer", ("Succeeded", "Failed")).status.phase == "Succeeded"
        core.create_namespaced_pod(
            namespace,
            pod_manifest(
                "reader",
                reader,
                volumes=volume,
                nodeSelector={"kubernetes.io/hostname": "node-gpu"},
                tolerations=[GPU_TOLERATION],
            ),
        )
        pod = wait_phase(core, namespace, "reader", ("Succeeded", "Failed"))
        assert pod.spec.node_name == "node-gpu"
        assert pod.status.phase == "Succeeded", agents.logs(namespace, "reader")
        assert agents.logs(namespace, "reader").strip() == "from the writer"
    finally:
        core.delete_persistent_volume(pv_name)


def test_init_containers_run_first_and_in_order(core: Any, agents: NodeAgents, namespace: str) -> None:
    mount = [{"name": "work", "mountPath": "/work"}]
    append = "import sys; open('/work/order', 'a').write(sys.argv[1] + ' ')"
    manifest = pod_manifest(
        "ordered",
        python_container("print(open('/work/order').read().strip())", volumeMounts=mount),
        volumes=[{"name": "work", "emptyDir": {}}],
        initContainers=[
            python_container(append, name="first", args=["first"], volumeMounts=mount),
            python_container(append, name="second", args=["second"], volumeMounts=mount),
        ],
    )
    core.create_namespaced_pod(namespace, manifest)

    pod = wait_phase(core, namespace, "ordered", ("Succeeded", "Failed"))
    assert pod.status.phase == "Succeeded"
    assert agents.logs(namespace, "ordered") == "first second\n"
    assert [s.state.terminated.reason for s in pod.status.init_container_statuses] == [
        "Completed",
        "Completed",
    ]
    conditions = {c.type: c.status for c in pod.status.conditions}
    assert conditions["Initialized"] == "True"
    assert conditions["PodScheduled"] == "True"


def test_deleting_a_pod_sends_sigterm_then_removes_it(core: Any, agents: NodeAgents, namespace: str) -> None:
    code = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    print('got SIGTERM', flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('ready', flush=True)\n"
        "time.sleep(300)\n"
    )
    core.create_namespaced_pod(namespace, pod_manifest("graceful", python_container(code)))
    wait_for(
        lambda: "ready" in _logs_or_empty(agents, namespace, "graceful"), timeout=60, what="pod to start"
    )
    pod = core.read_namespaced_pod("graceful", namespace)
    assert pod.status.phase == "Running"
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
    assert pod.status.container_statuses[0].state.running is not None

    core.delete_namespaced_pod("graceful", namespace)

    def gone() -> bool:
        return not [p for p in core.list_namespaced_pod(namespace).items if p.metadata.name == "graceful"]

    wait_for(gone, timeout=30, what="pod graceful to be removed")
    assert agents.logs(namespace, "graceful").splitlines() == ["ready", "got SIGTERM"]
    assert not agents.running_pids(namespace)


def _logs_or_empty(agents: NodeAgents, namespace: str, pod: str) -> str:
    try:
        return agents.logs(namespace, pod)
    except FileNotFoundError:
        return ""
