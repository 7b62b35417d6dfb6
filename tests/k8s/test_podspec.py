"""The node agent's pure spec handling (no cluster needed): path rewriting and $(VAR) expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from .podspec import ConfigError, Lookups, container_env, expand, rewrite_paths

MOUNTS = {
    "/data": Path("/tmp/x/pvc"),
    "/data/cache": Path("/tmp/x/cache"),
    "/etc/creds": Path("/tmp/x/creds"),
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/data", "/tmp/x/pvc"),
        ("/data/train.npz", "/tmp/x/pvc/train.npz"),
        ("--out=/data/model.keras", "--out=/tmp/x/pvc/model.keras"),
        ("open('/data/msg')", "open('/tmp/x/pvc/msg')"),
        ("/data/cache/a", "/tmp/x/cache/a"),  # the longest mountPath wins
        ("/database", "/database"),  # a longer name is not the mount
        ("/srv/data/x", "/srv/data/x"),  # nor is the mountPath in the middle of another path
        ("/etc/creds:/data", "/tmp/x/creds:/tmp/x/pvc"),
        ("no paths here", "no paths here"),
    ],
)
def test_rewrite_paths(value: str, expected: str) -> None:
    assert rewrite_paths(value, MOUNTS) == expected


def test_rewrite_is_single_pass() -> None:
    # The host dir of /data contains "/tmp"; a mount at /tmp must not rewrite it a second time.
    mounts = {"/data": Path("/tmp/host/data"), "/tmp": Path("/var/scratch")}
    assert rewrite_paths("/data/a /tmp/b", mounts) == "/tmp/host/data/a /var/scratch/b"


def test_expand_like_kubernetes() -> None:
    env = {"NAME": "pod-1", "EMPTY": ""}
    assert expand("hello $(NAME)", env) == "hello pod-1"
    assert expand("$(UNDEFINED) stays", env) == "$(UNDEFINED) stays"
    assert expand("$$(NAME) is escaped", env) == "$(NAME) is escaped"
    assert expand("[$(EMPTY)]", env) == "[]"


def _lookups(secrets: dict[str, dict[str, bytes]]) -> Lookups:
    return Lookups(
        secret=lambda ns, name: secrets.get(name),
        config_map=lambda ns, name: None,
        service_account_token=lambda pod, src: "token",
    )


POD = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "a"}},
    "spec": {"nodeName": "n"},
}


def test_env_order_and_references() -> None:
    container = {
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "value": "$(A)-$(HOST_ONLY)"},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k", "optional": True}}},
        ]
    }
    env = container_env(POD, container, {"HOST_ONLY": "h"}, _lookups({"s": {"pw": b"secret"}}))
    assert env == {"HOST_ONLY": "h", "A": "1", "B": "1-h", "APP": "a", "PW": "secret"}


def test_missing_secret_is_a_config_error() -> None:
    container = {"env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "pw"}}}]}
    with pytest.raises(ConfigError, match="ns/nope"):
        container_env(POD, container, {}, _lookups({}))
