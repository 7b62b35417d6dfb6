"""RBAC is enforced: identities without bindings are refused, a Role + RoleBinding lets them in."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.support.k8s.controlplane import ControlPlane
from tests.support.k8s.helpers import wait_for

pytestmark = pytest.mark.k8s


def grant_pod_reading(rbac: Any, namespace: str, subject: dict[str, str]) -> None:
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "pod-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [subject],
        },
    )


def status_of(call: Callable[[], Any]) -> int:
    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def test_user_is_refused_until_bound(
    control_plane: ControlPlane, core: Any, rbac: Any, namespace: str
) -> None:
    with control_plane.api_client(
        control_plane.user_kubeconfig("alice", groups=("data-scientists",))
    ) as alice:
        as_alice: Any = k8s.CoreV1Api(alice)
        assert status_of(lambda: as_alice.list_namespaced_pod(namespace)) == 403

        grant_pod_reading(
            rbac,
            namespace,
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
        )

        # The authorizer's informer sees the binding a moment later.
        wait_for(
            lambda: status_of(lambda: as_alice.list_namespaced_pod(namespace)) == 200,
            timeout=10,
            what="alice to be allowed to list pods",
        )
        # Exactly what was granted: not secrets, not pods of another namespace, not creating pods.
        assert status_of(lambda: as_alice.list_namespaced_secret(namespace)) == 403
        assert status_of(lambda: as_alice.list_namespaced_pod("default")) == 403
        pod = {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        assert status_of(lambda: as_alice.create_namespaced_pod(namespace, pod)) == 403


def test_service_account_via_impersonation(
    control_plane: ControlPlane, core: Any, rbac: Any, namespace: str
) -> None:
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "robot"}})
    robot = f"system:serviceaccount:{namespace}:robot"

    refused = control_plane.kubectl("get", "pods", "-n", namespace, f"--as={robot}")
    assert refused.returncode != 0
    assert f'User "{robot}" cannot list resource "pods"' in refused.stderr
    assert "Forbidden" in refused.stderr

    grant_pod_reading(
        rbac,
        namespace,
        {"kind": "ServiceAccount", "name": "robot", "namespace": namespace},
    )

    def list_as_robot() -> subprocess.CompletedProcess[str] | None:
        result = control_plane.kubectl("get", "pods", "-n", namespace, f"--as={robot}")
        return result if result.returncode == 0 else None

    allowed = wait_for(list_as_robot, timeout=10, what="the ServiceAccount to be allowed")
    assert "No resources found" in allowed.stderr
    can_i = control_plane.kubectl("auth", "can-i", "delete", "pods", "-n", namespace, f"--as={robot}")
    assert can_i.stdout.strip() == "no"

    # The same identity through a kubeconfig with `as:` (what an operator's e2e harness would use).
    as_robot = control_plane.impersonating_kubeconfig(robot)
    via_kubeconfig = control_plane.kubectl("get", "pods", "-n", namespace, kubeconfig=as_robot)
    assert via_kubeconfig.returncode == 0, via_kubeconfig.stderr
    denied = control_plane.kubectl("get", "secrets", "-n", namespace, kubeconfig=as_robot)
    assert f'User "{robot}" cannot list resource "secrets"' in denied.stderr
