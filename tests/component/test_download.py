"""The download path against a real loopback HTTP server that fails on purpose."""

import hashlib
from pathlib import Path

import pytest

from mnist_trainer.datasets import FetchPolicy, fetch_file, file_url, files_for
from mnist_trainer.errors import DataInvalidError, DataUnavailableError
from tests.support.servers import Mirror, serve_directory

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SUM = hashlib.sha256(PAYLOAD).hexdigest()
FAST = FetchPolicy(attempts=3, backoff_seconds=0.01, timeout_seconds=5)


@pytest.fixture
def mirror(tmp_path: Path) -> Mirror:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "blob.gz").write_bytes(PAYLOAD)
    with serve_directory(tmp_path / "srv") as served:
        yield served


def test_transient_failures_are_retried(tmp_path: Path, mirror: Mirror) -> None:
    mirror.behaviour.fail_next = 2
    path = fetch_file(mirror.url + "blob.gz", tmp_path / "cache" / "blob.gz", SUM, FAST)
    assert path.read_bytes() == PAYLOAD
    assert len(mirror.behaviour.requests) == 3


def test_an_interrupted_download_resumes_with_a_range_request(tmp_path: Path, mirror: Mirror) -> None:
    mirror.behaviour.cut_after_bytes = 300_000
    path = fetch_file(mirror.url + "blob.gz", tmp_path / "cache" / "blob.gz", SUM, FAST)
    assert path.read_bytes() == PAYLOAD
    ranges = [header for _, header in mirror.behaviour.requests]
    assert ranges[0] is None and ranges[-1] is not None and ranges[-1].startswith("bytes=")
    assert int(ranges[-1].removeprefix("bytes=").rstrip("-")) > 0
    assert not (tmp_path / "cache" / "blob.gz.part").exists()


def test_retries_give_up_with_a_data_unavailable_error(tmp_path: Path, mirror: Mirror) -> None:
    mirror.behaviour.fail_next = 10
    with pytest.raises(DataUnavailableError, match=r"download failed after 3 attempts.*HTTP 503"):
        fetch_file(mirror.url + "blob.gz", tmp_path / "blob.gz", SUM, FAST)
    assert not (tmp_path / "blob.gz").exists()


def test_not_found_is_final_at_once(tmp_path: Path, mirror: Mirror) -> None:
    with pytest.raises(DataUnavailableError, match="HTTP 404"):
        fetch_file(mirror.url + "absent.gz", tmp_path / "absent.gz", None, FAST)
    assert len(mirror.behaviour.requests) == 1


def test_a_corrupt_cached_file_is_downloaded_again(tmp_path: Path, mirror: Mirror) -> None:
    cached = tmp_path / "blob.gz"
    cached.write_bytes(b"half a file")
    assert fetch_file(mirror.url + "blob.gz", cached, SUM, FAST).read_bytes() == PAYLOAD


def test_a_wrong_checksum_removes_the_download(tmp_path: Path, mirror: Mirror) -> None:
    with pytest.raises(DataInvalidError, match="sha256 mismatch"):
        fetch_file(mirror.url + "blob.gz", tmp_path / "cache" / "blob.gz", "f" * 64, FAST)
    assert list((tmp_path / "cache").iterdir()) == [tmp_path / "cache" / "blob.gz.lock"]


def test_file_urls_are_copied_and_verified(tmp_path: Path) -> None:
    source = tmp_path / "local.gz"
    source.write_bytes(PAYLOAD)
    assert fetch_file(source.as_uri(), tmp_path / "cache" / "local.gz", SUM, FAST).read_bytes() == PAYLOAD
    with pytest.raises(DataUnavailableError, match="cannot read"):
        fetch_file((tmp_path / "nope.gz").as_uri(), tmp_path / "cache" / "nope.gz", None, FAST)


def test_urls_name_an_npz_or_a_folder_of_the_idx_quartet() -> None:
    assert files_for("https://m/x/mnist.npz") == ["mnist.npz"]
    assert len(files_for("https://m/x/")) == 4
    assert file_url("https://m/x", "t10k-labels-idx1-ubyte.gz") == "https://m/x/t10k-labels-idx1-ubyte.gz"
    assert file_url("https://m/x/mnist.npz", "mnist.npz") == "https://m/x/mnist.npz"
