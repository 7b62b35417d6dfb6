#!/usr/bin/env python3
"""Pack files into an OCI image (image layout folder and/or archive), with the Python standard library only.

    hack/oci-image.py --ref NAME:TAG [--rootfs-tar ROOTFS.tar] [--add SRC:DEST[:MODE]]... \
        [--env K=V]... [--entrypoint JSON] [--cmd JSON] [--user UID:GID] [--label K=V]... \
        [--layout DIR] [--archive FILE.tar]

Each of --rootfs-tar and the --add files becomes one gzip layer, in that order. The archive is what
`ctr images import` reads (its index names the image with `io.containerd.image.name`); the layout folder
is what BuildKit takes as a named build context (`oci-layout://`). Every timestamp is 0, so the same
inputs give the same digests.

Used by hack/build-images.sh for the images that need no build steps: the stand-in Python base (a
Debian root filesystem from mmdebstrap) and the pause image (one static binary).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class Blobs:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def add(self, content: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        self.data[digest] = content
        return digest


def _layer_from_files(files: list[tuple[Path, str, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        made: set[str] = set()
        for source, destination, mode in files:
            parts = Path(destination.lstrip("/")).parts
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                if folder not in made:
                    info = tarfile.TarInfo(folder)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                    made.add(folder)
            content = source.read_bytes()
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def build(args: argparse.Namespace) -> None:
    blobs = Blobs()
    raw_layers: list[bytes] = []
    if args.rootfs_tar:
        raw_layers.append(Path(args.rootfs_tar).read_bytes())
    additions: list[tuple[Path, str, int]] = []
    for spec in args.add:
        source, destination, *mode = spec.split(":")
        additions.append((Path(source), destination, int(mode[0], 8) if mode else 0o644))
    if additions:
        raw_layers.append(_layer_from_files(additions))
    layers: list[dict[str, Any]] = []
    diff_ids: list[str] = []
    for raw in raw_layers:
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        packed = gzip.compress(raw, compresslevel=6, mtime=0)
        layers.append({"mediaType": LAYER, "digest": blobs.add(packed), "size": len(packed)})

    config: dict[str, Any] = {"Env": args.env}
    if args.entrypoint:
        config["Entrypoint"] = json.loads(args.entrypoint)
    if args.cmd:
        config["Cmd"] = json.loads(args.cmd)
    if args.user:
        config["User"] = args.user
    if args.label:
        config["Labels"] = dict(label.split("=", 1) for label in args.label)
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "hack/oci-image.py"} for _ in diff_ids],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": blobs.add(config_bytes), "size": len(config_bytes)},
        "layers": layers,
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = blobs.add(manifest_bytes)
    tag = args.ref.rpartition(":")[2]
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "annotations": {
                    "io.containerd.image.name": args.ref,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True).encode(),
        **{
            f"blobs/sha256/{digest.removeprefix('sha256:')}": content
            for digest, content in blobs.data.items()
        },
    }
    if args.layout:
        layout = Path(args.layout)
        shutil.rmtree(layout, ignore_errors=True)
        for name, content in files.items():
            (layout / name).parent.mkdir(parents=True, exist_ok=True)
            (layout / name).write_bytes(content)
    if args.archive:
        partial = Path(args.archive + ".partial")
        with tarfile.open(partial, "w") as tar:
            for name, content in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        partial.replace(args.archive)
    print(manifest_digest)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ref", required=True, help="image name and tag, e.g. mnist-operator.local/pause:1.0"
    )
    parser.add_argument("--rootfs-tar", help="a root filesystem as a tar file: the first layer")
    parser.add_argument("--add", action="append", default=[], help="SRC:DEST[:OCTAL_MODE], one more layer")
    parser.add_argument("--env", action="append", default=[], help="K=V for the image config")
    parser.add_argument("--label", action="append", default=[], help="K=V")
    parser.add_argument("--entrypoint", help="JSON list")
    parser.add_argument("--cmd", help="JSON list")
    parser.add_argument("--user", help="UID:GID")
    parser.add_argument("--layout", help="write an OCI image layout folder here")
    parser.add_argument("--archive", help="write an OCI archive (tar of the layout) here")
    build(parser.parse_args())


if __name__ == "__main__":
    main()
