"""The cgroup rules of the test machines: every container stays inside this process's memory cgroup, and
whatever folder a test makes in a hierarchy it removes again (see the developers' guide)."""

from __future__ import annotations

from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def memory_cgroup() -> str:
    """This process's memory cgroup path (v1), which every container must stay inside."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
    raise RuntimeError("no memory cgroup in /proc/self/cgroup (cgroup v1 hybrid expected)")


def hierarchies() -> list[Path]:
    """Every mounted hierarchy, the hybrid host's unified (v2) one too: runc creates its paths there as
    well."""
    return [h for h in sorted(CGROUP_ROOT.iterdir()) if (h / "cgroup.procs").exists()]


def make_folders(path: str) -> list[Path]:
    """Create ``path`` (relative to each hierarchy's root) in every hierarchy; returns the folders made,
    parents first, so removing them in reverse leaves each hierarchy as it was."""
    made: list[Path] = []
    for hierarchy in hierarchies():
        folder = hierarchy
        for part in Path(path.lstrip("/")).parts:
            folder /= part
            if folder.is_dir():
                continue
            folder.mkdir()
            made.append(folder)
            # A new v1 cpuset has no CPUs or memory nodes until given its parent's.
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (folder / name).exists():
                    (folder / name).write_text((folder.parent / name).read_text())
    return made
