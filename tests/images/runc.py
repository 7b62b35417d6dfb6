"""Running an unpacked image with Debian's runc, as a pod's container would run (read-only root, a tmpfs /tmp,
no capabilities, a network namespace of its own), within this machine's rules: the container's cgroup is
nested in this process's memory cgroup and every folder made for it is removed afterwards; the spec sets no
rlimits (runc then leaves the inherited ones, which it could not raise here); the container is deleted by its
unique id whatever happens."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_api.layout import TMP_MOUNT_PATH
from tests.support.cgroups import CGROUP_ROOT, make_folders, memory_cgroup

from .oci import Archive


@dataclass(frozen=True)
class Bind:
    source: Path
    destination: str
    writable: bool = False


@dataclass
class NestedCgroup:
    """``path`` (relative to each hierarchy's root) prepared in every hierarchy, so runc finds the parents
    and removing what was made here leaves each hierarchy as it was."""

    path: str
    made: list[Path]

    @classmethod
    def create(cls, path: str) -> NestedCgroup:
        # The leaf is runc's to make and delete.
        return cls(path, make_folders(str(Path(path).parent)))

    def remove(self) -> None:
        leaves = [hierarchy / self.path.lstrip("/") for hierarchy in CGROUP_ROOT.iterdir()]
        for folder in [*leaves, *reversed(self.made)]:
            # Gone already, or still in use by another test's container under the same parent: leave it.
            with contextlib.suppress(OSError):
                folder.rmdir()


def runtime_spec(
    archive: Archive,
    rootfs: Path,
    cgroup: str,
    *,
    user: tuple[int, int],
    env: dict[str, str],
    args: list[str] | None,
    binds: list[Bind],
) -> dict[str, Any]:
    """An OCI runtime spec for the image: its entrypoint (plus ``args``, else its Cmd) and env."""
    config = archive.config
    command = [*(config.get("Entrypoint") or []), *(args if args is not None else config.get("Cmd") or [])]
    no_caps: dict[str, list[str]] = {k: [] for k in ("bounding", "effective", "permitted", "inheritable")}
    tmpfs_dev = ["nosuid", "strictatime", "mode=755", "size=65536k"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": user[0], "gid": user[1]},
            "args": command,
            "env": [f"{k}={v}" for k, v in {**archive.env, **env}.items()],
            "cwd": config.get("WorkingDir") or "/",
            "capabilities": no_caps,
            "noNewPrivileges": True,
            # No "rlimits": runc then leaves the inherited limits alone (it may not raise them here).
        },
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": "container",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": tmpfs_dev},
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": TMP_MOUNT_PATH,
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777", "size=1g"],
            },
            *(
                {
                    "destination": b.destination,
                    "type": "bind",
                    "source": str(b.source),
                    "options": ["rbind", "rw" if b.writable else "ro"],
                }
                for b in binds
            ),
        ],
        "linux": {
            # A network namespace of its own (nothing but a down loopback): no container here needs a network.
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "cgroupsPath": cgroup,
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def run(
    archive: Archive,
    rootfs: Path,
    work: Path,
    *,
    user: tuple[int, int],
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    binds: list[Bind] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """``runc run`` the image in the foreground; its output is captured. ``work`` holds the bundle and runc's
    own state folder (never the machine's /run/runc)."""
    runc = shutil.which("runc")
    assert runc, "runc is missing (bash hack/install-system-deps.sh installs it)"
    container = f"mnist-image-test-{uuid.uuid4().hex[:12]}"
    bundle = work / container
    bundle.mkdir(parents=True)
    command = [runc, "--root", str(work / "runc-state")]
    cgroup = NestedCgroup.create(f"{memory_cgroup().rstrip('/')}/{container}")
    try:
        spec = runtime_spec(
            archive, rootfs, cgroup.path, user=user, env=env or {}, args=args, binds=binds or []
        )
        (bundle / "config.json").write_text(json.dumps(spec, indent=2))
        return subprocess.run(
            [*command, "run", "--bundle", str(bundle), container],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        subprocess.run([*command, "delete", "--force", container], capture_output=True, check=False)
        cgroup.remove()
