"""Turning a pod's spec into a local process: env, volumes and the mountPath rewrite.

Pure functions over the pod as a JSON dict (API field names, as the watch delivers it), so they can be
read and tested without a cluster. Secrets and ConfigMaps come in through the :class:`Lookups` callbacks.

The node agent cannot mount anything, so a container's ``volumeMounts`` become host directories and
every occurrence of a ``mountPath`` in the container's command, args, env values and workingDir is
replaced by that directory (:func:`rewrite_paths`). A process therefore sees its volumes as long as it
learns paths from its command line or env -- which is how Kubernetes workloads are normally configured.
Hard-coded paths inside a program (e.g. ``/var/run/secrets/kubernetes.io/serviceaccount`` in a client
library) are NOT rewritten; ``MOUNT_MAP_ENV`` holds the whole mapping as JSON for code that wants it.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from kubernetes.utils import parse_quantity

Json = dict[str, Any]
MOUNT_MAP_ENV = "TEST_NODE_AGENT_MOUNTS"


class ConfigError(Exception):
    """A referenced Secret/ConfigMap/key is missing (the kubelet's CreateContainerConfigError)."""


class UnsupportedError(Exception):
    """Something the node agent cannot do (an image-only container, an exotic volume type)."""


@dataclass
class Lookups:
    """How the spec reaches the API: each returns None when the object does not exist."""

    secret: Callable[[str, str], Mapping[str, bytes] | None]
    config_map: Callable[[str, str], Mapping[str, bytes] | None]
    service_account_token: Callable[[Json, Json], str]  # (pod, serviceAccountToken source) -> JWT
    node_allocatable: Mapping[str, str] = field(default_factory=dict)


# --- env ----------------------------------------------------------------------------------------

_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_ref(pod: Json, path: str) -> str:
    """The downward API's fieldRef values the kubelet supports for env vars."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        # The agent runs every pod on the host network namespace: both IPs are loopback.
        "status.podIP": status.get("podIP") or "127.0.0.1",
        "status.hostIP": status.get("hostIP") or "127.0.0.1",
        "status.podIPs": status.get("podIP") or "127.0.0.1",
        "status.hostIPs": status.get("hostIP") or "127.0.0.1",
    }
    if path in simple:
        return str(simple[path] or "")
    match = _LABEL_REF.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):  # volumes only: one key="value" per line
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f"{k}={json.dumps(v)}" for k, v in items)
    raise UnsupportedError(f"fieldRef {path!r} is not supported")


def resource_field_ref(container: Json, ref: Json, allocatable: Mapping[str, str]) -> str:
    """limits.cpu and friends, rounded up in units of the divisor as the kubelet does."""
    resource = ref["resource"]
    kind, _, name = resource.partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(name)
    if value is None:  # an unset limit reads as the node's allocatable, like on a real node
        value = allocatable.get(name, "0")
    divisor = _quantity(str(ref.get("divisor") or "1"))
    return str(math.ceil(_quantity(str(value)) / divisor))


def _quantity(text: str) -> Decimal:
    return Decimal(parse_quantity(text))  # type: ignore[no-untyped-call]


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined names are substituted, ``$$`` escapes a dollar."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)", repl, value)


def _decode(data: Mapping[str, bytes], key: str) -> str:
    return data[key].decode(errors="replace")


def container_env(pod: Json, container: Json, base: Mapping[str, str], lookups: Lookups) -> dict[str, str]:
    """``base``, then envFrom (in order), then env, each value $(VAR)-expanded against what precedes."""
    namespace = pod["metadata"]["namespace"]
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        for kind in ("secretRef", "configMapRef"):
            ref = source.get(kind)
            if ref is None:
                continue
            getter = lookups.secret if kind == "secretRef" else lookups.config_map
            data = getter(namespace, ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f"{kind} {namespace}/{ref['name']} not found")
            env.update({prefix + k: _decode(data, k) for k in data})
    for var in container.get("env") or []:
        name = var["name"]
        if "value" in var or "valueFrom" not in var:
            env[name] = expand(var.get("value") or "", env)
            continue
        value = _value_from(pod, container, var["valueFrom"], lookups)
        if value is not None:
            env[name] = value
    return env


def _value_from(pod: Json, container: Json, source: Json, lookups: Lookups) -> str | None:
    namespace = pod["metadata"]["namespace"]
    if "fieldRef" in source:
        return field_ref(pod, source["fieldRef"]["fieldPath"])
    if "resourceFieldRef" in source:
        return resource_field_ref(container, source["resourceFieldRef"], lookups.node_allocatable)
    for kind, getter in (("secretKeyRef", lookups.secret), ("configMapKeyRef", lookups.config_map)):
        if kind in source:
            ref = source[kind]
            data = getter(namespace, ref["name"])
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    return None
                raise ConfigError(f"{kind} {namespace}/{ref['name']}[{ref['key']}] not found")
            return _decode(data, ref["key"])
    raise UnsupportedError(f"valueFrom {sorted(source)} is not supported")


# --- volumes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where the agent keeps things on the host; shared by every node agent of one cluster."""

    root: Path

    def pod_dir(self, pod: Json) -> Path:
        meta = pod["metadata"]
        return self.root / "pods" / str(meta["namespace"]) / str(meta["name"]) / str(meta["uid"])

    def claim_dir(self, namespace: str, claim: str) -> Path:
        # Keyed by claim, not by pod: every pod using the claim (on any node) shares the directory.
        return self.root / "pvc" / namespace / claim

    def host_path(self, path: str) -> Path:
        # hostPath is confined to the cluster root too: tests must not write into the real host.
        return self.root / "hostpath" / path.lstrip("/")

    def log_file(self, pod: Json, container: str) -> Path:
        return self.pod_dir(pod) / "logs" / f"{container}.log"


def _write_files(target: Path, files: Mapping[str, bytes], mode: int | None) -> None:
    for rel, content in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        if mode is not None:
            path.chmod(mode & 0o777)


def _project(data: Mapping[str, bytes], items: list[Json] | None) -> dict[str, bytes]:
    if not items:
        return dict(data)
    missing = [i["key"] for i in items if i["key"] not in data]
    if missing:
        raise ConfigError(f"keys {missing} not found")
    return {i["path"]: data[i["key"]] for i in items}


def _object_files(kind: str, namespace: str, source: Json, lookups: Lookups) -> dict[str, bytes] | None:
    getter = lookups.secret if kind == "secret" else lookups.config_map
    name = source.get("secretName") or source.get("name") or ""
    data = getter(namespace, name)
    if data is None:
        if source.get("optional"):
            return None
        raise ConfigError(f"{kind} {namespace}/{name} not found")
    return _project(data, source.get("items"))


def _downward_files(pod: Json, items: list[Json], lookups: Lookups) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    for item in items:
        if "fieldRef" in item:
            value = field_ref(pod, item["fieldRef"]["fieldPath"])
        else:
            ref = item["resourceFieldRef"]
            container = containers[ref.get("containerName") or next(iter(containers))]
            value = resource_field_ref(container, ref, lookups.node_allocatable)
        files[item["path"]] = value.encode()
    return files


def materialize_volumes(pod: Json, layout: Layout, lookups: Lookups) -> dict[str, Path]:
    """Create a host directory for every volume of ``pod``; returns volume name -> directory."""
    namespace = pod["metadata"]["namespace"]
    volumes_dir = layout.pod_dir(pod) / "volumes"
    result: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        target = volumes_dir / name
        if "emptyDir" in volume:
            target.mkdir(parents=True, exist_ok=True)
        elif "persistentVolumeClaim" in volume:
            target = layout.claim_dir(namespace, volume["persistentVolumeClaim"]["claimName"])
            target.mkdir(parents=True, exist_ok=True)
        elif "hostPath" in volume:
            target = layout.host_path(volume["hostPath"]["path"])
            target.mkdir(parents=True, exist_ok=True)
        elif "secret" in volume or "configMap" in volume:
            kind = "secret" if "secret" in volume else "configMap"
            source = volume[kind]
            target.mkdir(parents=True, exist_ok=True)
            files = _object_files(kind, namespace, source, lookups)
            _write_files(target, files or {}, source.get("defaultMode"))
        elif "downwardAPI" in volume:
            target.mkdir(parents=True, exist_ok=True)
            _write_files(target, _downward_files(pod, volume["downwardAPI"]["items"], lookups), None)
        elif "projected" in volume:
            target.mkdir(parents=True, exist_ok=True)
            _write_files(target, _projected_files(pod, volume["projected"], lookups), None)
        else:
            kinds = sorted(set(volume) - {"name"})
            raise UnsupportedError(f"volume {name!r} of type {kinds} is not supported by the node agent")
        result[name] = target
    return result


def _projected_files(pod: Json, projected: Json, lookups: Lookups) -> dict[str, bytes]:
    """The sources of a projected volume, e.g. the kube-api-access-* volume every pod gets."""
    namespace = pod["metadata"]["namespace"]
    files: dict[str, bytes] = {}
    for source in projected.get("sources") or []:
        if "secret" in source:
            files.update(_object_files("secret", namespace, source["secret"], lookups) or {})
        elif "configMap" in source:
            files.update(_object_files("configMap", namespace, source["configMap"], lookups) or {})
        elif "downwardAPI" in source:
            files.update(_downward_files(pod, source["downwardAPI"]["items"], lookups))
        elif "serviceAccountToken" in source:
            token_source = source["serviceAccountToken"]
            files[token_source["path"]] = lookups.service_account_token(pod, token_source).encode()
        else:
            raise UnsupportedError(f"projected source {sorted(source)} is not supported")
    return files


def mount_map(container: Json, volumes: Mapping[str, Path], env: Mapping[str, str]) -> dict[str, Path]:
    """mountPath -> host directory for one container (subPath / subPathExpr resolved and created)."""
    mapping: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        host: Path = volumes[mount["name"]]
        sub = mount.get("subPath") or expand(mount.get("subPathExpr") or "", env)
        if sub:
            host = host / sub
            if not host.exists():
                host.mkdir(parents=True)
        mapping[mount["mountPath"].rstrip("/") or "/"] = host
    return mapping


def rewrite_paths(value: str, mounts: Mapping[str, Path]) -> str:
    """Replace each mountPath appearing as a whole path prefix in ``value`` by its host directory.

    "Whole" means not glued to other path characters: with a mount at /data, ``/data/x`` and
    ``--out=/data`` are rewritten but ``/database`` and ``/srv/data`` are not. One regex pass over all
    mounts (longest first), so a replacement is never rewritten again by a shorter mountPath.
    """
    paths = sorted((p for p in mounts if p != "/"), key=len, reverse=True)
    if not paths:
        return value
    pattern = re.compile(r"(?<![\w.\-/])(" + "|".join(re.escape(p) for p in paths) + r")(?=$|/|[^\w.\-])")
    return pattern.sub(lambda m: str(mounts[m.group(1)]), value)


def decode_secret_data(data: Mapping[str, str] | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (data or {}).items()}
