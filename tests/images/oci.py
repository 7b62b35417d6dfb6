"""Reading OCI image archives with the standard library: the index, manifest and config, and the root
filesystem the layers make (whiteouts applied), as a container runtime would see it."""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import tarfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, cast

INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass(frozen=True)
class Archive:
    """One image in an OCI archive (a tar of an OCI image layout), read without unpacking the archive."""

    path: Path

    def blob(self, digest: str) -> bytes:
        algorithm, _, value = digest.partition(":")
        return self.member(f"blobs/{algorithm}/{value}")

    def member(self, name: str) -> bytes:
        with tarfile.open(self.path) as tar:
            for candidate in (name, f"./{name}"):
                try:
                    extracted = tar.extractfile(candidate)
                except KeyError:
                    continue
                if extracted is not None:
                    return extracted.read()
        raise KeyError(f"{self.path}: no {name}")

    @cached_property
    def index(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.member("index.json")))

    @cached_property
    def descriptor(self) -> dict[str, Any]:
        """The index entry naming the image (its annotations carry the name `ctr images import` gives it)."""
        manifests = self.index["manifests"]
        assert len(manifests) == 1, f"{self.path}: expected one image, found {manifests}"
        return cast(dict[str, Any], manifests[0])

    @cached_property
    def manifest(self) -> dict[str, Any]:
        descriptor = self.descriptor
        while descriptor["mediaType"] in INDEX_TYPES:  # a multi-platform index: take linux/amd64
            nested = json.loads(self.blob(descriptor["digest"]))
            images = [
                m
                for m in nested["manifests"]
                if m.get("platform", {}).get("os") == "linux"
                and m.get("platform", {}).get("architecture") == "amd64"
            ]
            assert images, f"{self.path}: no linux/amd64 image in {nested}"
            descriptor = images[0]
        return cast(dict[str, Any], json.loads(self.blob(descriptor["digest"])))

    @cached_property
    def image_config(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.blob(self.manifest["config"]["digest"])))

    @property
    def config(self) -> dict[str, Any]:
        """The runtime part of the image config: User, Env, Entrypoint, Cmd, Labels, WorkingDir."""
        return cast(dict[str, Any], self.image_config.get("config") or {})

    @property
    def env(self) -> dict[str, str]:
        return dict(entry.split("=", 1) for entry in self.config.get("Env") or [])

    @property
    def labels(self) -> dict[str, str]:
        return cast(dict[str, str], self.config.get("Labels") or {})

    def unpack(self, destination: Path) -> Path:
        """Apply every layer in order onto ``destination`` and return it."""
        destination.mkdir(parents=True, exist_ok=True)
        # A runtime's root is 0755 unless a layer says otherwise (layers built FROM scratch often carry no
        # entry for it); pytest's temporary folders are 0700, which uids other than root could not enter.
        destination.chmod(0o755)
        with tarfile.open(self.path) as archive:
            for layer in self.manifest["layers"]:
                algorithm, _, value = layer["digest"].partition(":")
                blob = archive.extractfile(f"blobs/{algorithm}/{value}")
                assert blob is not None, layer
                # "r|*": a stream, compression detected (gzip here; BuildKit's default).
                with tarfile.open(fileobj=blob, mode="r|*") as tar:
                    apply_layer(tar, destination)
        return destination


def _inside(root: Path, name: str) -> Path:
    """``name`` (absolute or not, ".." resolved as a container would) as a path under ``root``, never outside."""
    normal = posixpath.normpath("/" + name).lstrip("/")
    return root / normal if normal else root


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _resolve_parents(root: Path, target: Path) -> Path:
    """``target`` with symlinks among its parent folders followed as in the container: relative to root."""
    *parents, last = target.relative_to(root).parts or ("",)
    current = root
    for part in parents:
        candidate = current / part
        for _ in range(40):
            if not candidate.is_symlink():
                break
            link = os.readlink(candidate)
            relative = link if link.startswith("/") else f"{candidate.parent.relative_to(root)}/{link}"
            candidate = _inside(root, relative)
        else:
            raise AssertionError(f"symlink loop at {candidate}")
        current = candidate
    return current / last if last else current


def apply_layer(tar: tarfile.TarFile, root: Path) -> None:
    """One layer, streamed: whiteouts delete what lower layers made, everything else is written.

    An opaque whiteout empties its folder of what lower layers put there (not of this layer's own entries,
    whatever their order in the tar). Device nodes are skipped (runtimes mount their own /dev); owners and
    modes are kept.
    """
    written: set[Path] = set()
    for member in tar:
        target = _resolve_parents(root, _inside(root, member.name))
        base = target.name
        if base == OPAQUE:
            if target.parent.is_dir():
                for child in target.parent.iterdir():
                    if child not in written:
                        _remove(child)
            continue
        if base.startswith(WHITEOUT):
            _remove(target.with_name(base[len(WHITEOUT) :]))
            continue
        if member.ischr() or member.isblk() or member.isfifo():
            continue
        written.add(target)
        if member.isdir():
            if target.is_symlink() or (target.exists() and not target.is_dir()):
                _remove(target)
            target.mkdir(parents=True, exist_ok=True)
        else:
            if target.exists() or target.is_symlink():
                _remove(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            if member.issym():
                os.symlink(member.linkname, target)
            elif member.islnk():
                os.link(_resolve_parents(root, _inside(root, member.linkname)), target, follow_symlinks=False)
            else:
                source = tar.extractfile(member)
                assert source is not None, member.name
                with target.open("wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
        os.chown(target, member.uid, member.gid, follow_symlinks=False)
        if not member.issym():
            os.chmod(target, member.mode)
