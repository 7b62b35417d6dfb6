"""Certificates and kubeconfigs for the test control plane, made with the ``openssl`` CLI.

ECDSA P-256 keys rather than RSA: the whole PKI (CA, serving cert, six client certs, the service-account
signing key) is generated in well under a second, which matters for the session start-up budget.
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _ec_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


class Pki:
    """A throw-away certificate authority in ``directory`` that signs serving and client certs."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = KeyPair(self.dir / "ca.crt", self.dir / "ca.key")
        _ec_key(self.ca.key)
        _openssl(
            "req", "-x509", "-new", "-key", str(self.ca.key), "-out", str(self.ca.cert),
            "-days", "3650", "-subj", "/CN=mnist-operator-test-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def _sign(self, name: str, subject: str, extensions: str) -> KeyPair:
        pair = KeyPair(self.dir / f"{name}.crt", self.dir / f"{name}.key")
        csr = self.dir / f"{name}.csr"
        ext = self.dir / f"{name}.ext"
        ext.write_text(extensions)
        _ec_key(pair.key)
        _openssl("req", "-new", "-key", str(pair.key), "-out", str(csr), "-subj", subject)
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.ca.cert), "-CAkey", str(self.ca.key),
            "-CAcreateserial", "-out", str(pair.cert), "-days", "365", "-extfile", str(ext),
        )  # fmt: skip
        csr.unlink()
        ext.unlink()
        return pair

    def serving(self, name: str, dns: list[str], ips: list[str]) -> KeyPair:
        san = ",".join([*(f"DNS:{d}" for d in dns), *(f"IP:{i}" for i in ips)])
        return self._sign(
            name,
            f"/CN={name}",
            f"subjectAltName={san}\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )

    def client(self, user: str, groups: tuple[str, ...] = ()) -> KeyPair:
        """A client cert: the apiserver takes the CN as the user name and each O as a group."""
        subject = "".join(f"/O={g}" for g in groups) + f"/CN={user}"
        safe = user.replace(":", "_").replace("/", "_")
        return self._sign(
            f"client-{safe}",
            subject,
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        )

    def service_account_keys(self) -> KeyPair:
        """Signing key (private) and verification key (public) for service-account tokens."""
        pair = KeyPair(self.dir / "sa.pub", self.dir / "sa.key")
        _ec_key(pair.key)
        _openssl("pkey", "-in", str(pair.key), "-pubout", "-out", str(pair.cert))
        return pair


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca: Path,
    client: KeyPair | None = None,
    token: str | None = None,
    impersonate: str | None = None,
    impersonate_groups: tuple[str, ...] = (),
    namespace: str | None = None,
) -> Path:
    """A self-contained kubeconfig (certificates embedded), usable by kubectl, helm and the client."""
    user: dict[str, object] = {}
    if client is not None:
        user["client-certificate-data"] = _b64(client.cert)
        user["client-key-data"] = _b64(client.key)
    if token is not None:
        user["token"] = token
    if impersonate is not None:
        user["as"] = impersonate
    if impersonate_groups:
        user["as-groups"] = list(impersonate_groups)
    context: dict[str, object] = {"cluster": "test", "user": "user"}
    if namespace is not None:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "test", "context": context}],
        "current-context": "test",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
