from pathlib import Path

import numpy as np
import pytest

from mnist_trainer.idx import IdxFormatError, encode_idx, parse_idx

FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_round_trip_compressed_and_raw() -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    for compress in (True, False):
        assert np.array_equal(parse_idx(encode_idx(images, compress=compress)), images)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "bad magic"),
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x05", "unsupported idx element type 0x0d"),
        (b"\x00\x00\x08\x02\x00\x00", "truncated idx header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05", "body has 1 bytes, header promises 3"),
        (b"\x1f\x8b\x08garbage", "corrupt gzip"),
    ],
)
def test_malformed_files_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(IdxFormatError, match=message):
        parse_idx(data)


@pytest.mark.skipif(not FASHION.exists(), reason="apt-get install dataset-fashion-mnist (.ci/run does)")
def test_reads_the_real_fashion_mnist_files() -> None:
    labels = parse_idx((FASHION / "t10k-labels-idx1-ubyte.gz").read_bytes())
    images = parse_idx((FASHION / "t10k-images-idx3-ubyte.gz").read_bytes())
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert np.bincount(labels).tolist() == [1000] * 10
