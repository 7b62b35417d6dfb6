"""The trainer image really trains: its root filesystem run by Debian's runc, as a pod would run it (read-only
root, uid 1000, a tmpfs /tmp, the image's entrypoint and env plus the operator's MNIST_* contract), on
generated idx files bind-mounted read-only and read through a file:// URL, with no network and no
Pushgateway (the contract makes pushing optional). The run's files land on a bind-mounted output folder.

Machine rules kept: the container's cgroup is nested in this process's memory cgroup (and every folder made
for it is removed), the spec sets no rlimits (the runtime's own are inherited, never raised), and the
container is deleted by its id.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mnist_api.layout import METRICS_FILE, OUTPUT_MOUNT_PATH, TMP_MOUNT_PATH
from tests.support.mnist_data import synthetic_mnist, write_idx_quartet

from .conftest import BuiltImage

pytestmark = [pytest.mark.images, pytest.mark.slow]

CGROUP_ROOT = Path("/sys/fs/cgroup")
SOURCE_MOUNT = "/var/lib/mnist/source"  # the generated idx files, read-only
UID = GID = 1000


def memory_cgroup() -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
    raise AssertionError("no memory cgroup in /proc/self/cgroup")


@dataclass
class NestedCgroup:
    """``path`` (relative to each hierarchy's root) prepared in every hierarchy, so runc finds the parents
    and removing what was made here leaves each hierarchy as it was."""

    path: str
    made: list[Path]

    @classmethod
    def create(cls, path: str) -> NestedCgroup:
        made: list[Path] = []
        for hierarchy in sorted(CGROUP_ROOT.iterdir()):
            if not (hierarchy / "cgroup.procs").exists():
                continue
            folder = hierarchy
            for part in Path(path).relative_to("/").parts[:-1]:  # the leaf is runc's to make and delete
                folder /= part
                if folder.is_dir():
                    continue
                folder.mkdir()
                made.append(folder)
                for name in ("cpuset.cpus", "cpuset.mems"):  # a new v1 cpuset starts with none
                    if (folder / name).exists():
                        (folder / name).write_text((folder.parent / name).read_text())
        return cls(path, made)

    def remove(self) -> None:
        leaves = [hierarchy / self.path.lstrip("/") for hierarchy in CGROUP_ROOT.iterdir()]
        for folder in [*leaves, *reversed(self.made)]:
            # Gone already, or still in use by another test's container under the same parent: leave it.
            with contextlib.suppress(OSError):
                folder.rmdir()


def spec(image: BuiltImage, rootfs: Path, cgroup: str, env: dict[str, str], mounts: dict[str, Path]) -> Any:
    """An OCI runtime spec for the image, as a pod's container: only what the test needs."""
    config = image.archive.config
    base = dict(entry.split("=", 1) for entry in config.get("Env") or [])
    binds = [
        {"destination": target, "type": "bind", "source": str(source), "options": ["rbind", option]}
        for target, (source, option) in {
            SOURCE_MOUNT: (mounts["source"], "ro"),
            OUTPUT_MOUNT_PATH: (mounts["output"], "rw"),
        }.items()
    ]
    no_caps: dict[str, list[str]] = {k: [] for k in ("bounding", "effective", "permitted", "inheritable")}
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": UID, "gid": GID},
            "args": [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])],
            "env": [f"{k}={v}" for k, v in {**base, **env}.items()],
            "cwd": config.get("WorkingDir") or "/",
            "capabilities": no_caps,
            "noNewPrivileges": True,
            # No "rlimits": runc then leaves the inherited limits alone (it may not raise them here).
        },
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": "trainer",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
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
            *binds,
        ],
        "linux": {
            # A network namespace of its own (nothing but a down loopback): the run needs no network.
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "cgroupsPath": cgroup,
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


@dataclass
class Run:
    returncode: int
    log: str
    output: Path


@pytest.fixture(scope="module")
def trainer_run(
    built_images: dict[str, BuiltImage],
    rootfs: Callable[[str], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Run]:
    runc = shutil.which("runc")
    if runc is None:
        pytest.fail("runc is missing (bash hack/install-system-deps.sh installs it)")
    if os.geteuid() != 0:
        pytest.skip("runc needs root here")
    work = tmp_path_factory.mktemp("runc")
    source, output = work / "source", work / "output"
    files = write_idx_quartet(source, synthetic_mnist(n_train=600, n_test=200, seed=3))
    output.mkdir()
    os.chown(output, UID, GID)
    for path in (work, source, *files.values()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    env = {
        "MNIST_NAMESPACE": "default",
        "MNIST_NAME": "image-test",
        "MNIST_UID": "uid-image-test",
        "MNIST_DATASET": "mnist",
        "MNIST_DATASET_URL": f"file://{SOURCE_MOUNT}/",
        # Generated files: their own checksums replace the real MNIST ones, as a mirror's would.
        "MNIST_DATASET_SHA256": json.dumps(
            {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
        ),
        # Where the trainer caches the dataset: no data volume here, so the writable /tmp.
        "MNIST_DATA_DIR": f"{TMP_MOUNT_PATH}/data",
        "MNIST_OUTPUT_DIR": OUTPUT_MOUNT_PATH,
        "MNIST_MODEL": "mlp",
        "MNIST_EPOCHS": "1",
        "MNIST_BATCH_SIZE": "64",
        "MNIST_LEARNING_RATE": "0.001",
        "MNIST_OPTIMIZER": "adam",
        "MNIST_VALIDATION_SPLIT": "0.1",
        "MNIST_SEED": "7",
        "MNIST_EXPORT_FORMATS": '["keras"]',
        "MNIST_DOWNLOAD_ATTEMPTS": "1",
    }
    bundle = work / "bundle"
    bundle.mkdir()
    container = f"mnist-image-test-{uuid.uuid4().hex[:12]}"
    cgroup = NestedCgroup.create(f"{memory_cgroup().rstrip('/')}/{container}")
    image = built_images["trainer"]
    config = spec(image, rootfs("trainer"), cgroup.path, env, {"source": source, "output": output})
    (bundle / "config.json").write_text(json.dumps(config, indent=2))
    state = work / "runc-state"  # runc's own state folder, not the machine's /run/runc
    command = [runc, "--root", str(state)]
    try:
        completed = subprocess.run(
            [*command, "run", "--bundle", str(bundle), container],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        yield Run(completed.returncode, completed.stdout + completed.stderr, output)
    finally:
        subprocess.run([*command, "delete", "--force", container], capture_output=True, check=False)
        cgroup.remove()


def test_the_trainer_image_trains_one_epoch(trainer_run: Run) -> None:
    assert trainer_run.returncode == 0, trainer_run.log[-6000:]
    assert "epoch 1/1" in trainer_run.log.lower(), trainer_run.log[-6000:]
    assert "done: test accuracy" in trainer_run.log, trainer_run.log[-6000:]


def test_the_trainer_image_writes_the_run_files(trainer_run: Run) -> None:
    assert trainer_run.returncode == 0, trainer_run.log[-6000:]
    run_dir = trainer_run.output / "default" / "image-test"
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    assert metrics, metrics
    assert (run_dir / "model.keras").is_file()
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in run_dir.rglob("*")}
    assert owners == {(UID, GID)}, owners
