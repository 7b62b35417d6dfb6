"""Image-folder datasets: safe extraction, the folder layout's checks, decoding and its cache."""

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from mnist_trainer import image_folder
from mnist_trainer.errors import DataInvalidError
from mnist_trainer.image_folder import (
    extract_archive,
    find_dataset_root,
    list_images,
    load_image_folder,
    read_image,
    read_images,
)


def png_bytes(pixels: npt.NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def digit(value: int, size: int = 28) -> npt.NDArray[np.uint8]:
    pixels = np.zeros((size, size), dtype=np.uint8)
    pixels[size // 4 : 3 * size // 4, size // 3 : 2 * size // 3] = value
    return pixels


def write_dataset(root: Path, train: dict[str, int], test: dict[str, int]) -> None:
    """``count`` PNGs per class folder of each split."""
    for split, classes in (("training", train), ("testing", test)):
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{i:03d}.png").write_bytes(png_bytes(digit(20 * i + len(name))))


def add_tar_member(tar: tarfile.TarFile, name: str, data: bytes = b"x", **fields: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if info.isfile() else None)


# -- extraction --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["../evil.png", "mnist/../../evil.png", "/tmp/evil.png"])
def test_a_tar_member_outside_the_target_is_refused_and_nothing_is_written(tmp_path: Path, bad: str) -> None:
    archive = tmp_path / "cache" / "images.tgz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        add_tar_member(tar, "mnist/training/0/a.png", png_bytes(digit(9)))
        add_tar_member(tar, bad, b"owned")
    with pytest.raises(
        DataInvalidError, match=rf"images.tgz: refusing member '{bad}': its path leads outside"
    ):
        extract_archive(archive)
    assert not (tmp_path / "evil.png").exists() and not Path("/tmp/evil.png").exists()
    # Neither the partial extraction nor a finished-looking folder stays behind.
    assert sorted(p.name for p in archive.parent.iterdir() if not p.name.endswith(".lock")) == ["images.tgz"]


def test_a_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "images.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_tar_member(tar, "data/training/0/a.png", type=tarfile.SYMTYPE, linkname="../../../../etc/passwd")
    with pytest.raises(DataInvalidError, match=r"refusing link 'data/training/0/a.png'.*outside"):
        extract_archive(archive)


def test_a_zip_member_outside_the_target_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("training/0/a.png", png_bytes(digit(9)))
        zipped.writestr("../evil.png", b"owned")
    with pytest.raises(DataInvalidError, match=r"refusing member '../evil.png'"):
        extract_archive(archive)
    assert not (tmp_path.parent / "evil.png").exists()


def test_an_archive_unpacking_to_more_than_the_limit_is_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(image_folder, "MAX_EXTRACTED_BYTES", 1000)
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("training/0/a.png", bytes(600))
        zipped.writestr("training/0/b.png", bytes(600))
    with pytest.raises(DataInvalidError, match=r"unpacks to more than 1,000 bytes \(at 'training/0/b.png'\)"):
        extract_archive(archive)


def test_a_corrupt_archive_is_data_invalid(tmp_path: Path) -> None:
    archive = tmp_path / "images.tgz"
    archive.write_bytes(b"\x1f\x8b\x08\x00" + bytes(100))
    with pytest.raises(DataInvalidError, match=r"images.tgz: not a valid tar archive"):
        extract_archive(archive)


def test_an_archive_is_extracted_once_per_content(tmp_path: Path) -> None:
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("mnist/training/0/a.png", png_bytes(digit(9)))
    first = extract_archive(archive)
    assert (first / "mnist/training/0/a.png").is_file()
    (first / "marker").touch()
    assert extract_archive(archive) == first and (first / "marker").exists()
    with zipfile.ZipFile(archive, "w") as zipped:  # new content, new folder
        zipped.writestr("mnist/training/1/b.png", png_bytes(digit(9)))
    second = extract_archive(archive)
    assert second != first and (second / "mnist/training/1/b.png").is_file()


# -- layout ------------------------------------------------------------------------------------------
def test_a_testing_class_missing_from_training_is_a_readable_error(tmp_path: Path) -> None:
    write_dataset(tmp_path, {"cat": 2, "dog": 2}, {"cat": 1, "cow": 1})
    with pytest.raises(DataInvalidError) as caught:
        load_image_folder(tmp_path)
    message = str(caught.value)
    assert f"{tmp_path / 'testing'}: class folder cow/ not in training/ (its classes: cat, dog)" in message


def test_an_empty_class_folder_names_the_folder(tmp_path: Path) -> None:
    write_dataset(tmp_path, {"a": 2, "b": 2}, {"a": 1})
    (tmp_path / "training" / "c").mkdir()
    (tmp_path / "training" / "c" / "notes.txt").write_text("no images here")
    with pytest.raises(DataInvalidError, match=rf"{tmp_path / 'training' / 'c'}: no images .* folder 'c'"):
        load_image_folder(tmp_path)


def test_an_unreadable_image_names_the_file(tmp_path: Path) -> None:
    write_dataset(tmp_path, {"a": 2, "b": 2}, {"a": 1})
    broken = tmp_path / "training" / "b" / "broken.PNG"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    with pytest.raises(DataInvalidError, match=rf"{broken}: not a readable PNG or JPEG image"):
        load_image_folder(tmp_path)


def test_the_dataset_may_sit_one_level_down_and_only_images_count(tmp_path: Path) -> None:
    write_dataset(tmp_path / "mnist", {"1": 2, "10": 1, "2": 3}, {"2": 1, "10": 1})
    (tmp_path / "README.md").write_text("rmldnn's tarball has a top folder")
    (tmp_path / "mnist" / "training" / "2" / ".hidden.png").write_bytes(b"not read")
    (tmp_path / "mnist" / "training" / "2" / "labels.csv").write_text("ignored")
    (tmp_path / "__MACOSX").mkdir()
    assert find_dataset_root(tmp_path) == tmp_path / "mnist"
    data = load_image_folder(tmp_path)
    # Plain string order, as Keras' image_dataset_from_directory and torchvision's ImageFolder sort.
    assert data.class_names == ("1", "10", "2")
    assert data.y_train.tolist() == [0, 0, 1, 2, 2, 2]
    assert data.y_test.tolist() == [1, 2]
    assert data.x_train.shape == (6, 28, 28) and data.x_train.dtype == np.uint8


def test_images_are_listed_recursively_in_relative_path_order(tmp_path: Path) -> None:
    for name in ("b/2.jpg", "a.png", "b/10.JPEG", "a/z.Png", ".git/x.png", "c/.DS_Store", "c/d.gif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    images, skipped = list_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in images] == [
        "a.png",
        "a/z.Png",
        "b/10.JPEG",
        "b/2.jpg",
    ]
    assert skipped == 1  # the gif; hidden files and folders are not counted


# -- decoding ----------------------------------------------------------------------------------------
def test_a_larger_colour_image_is_converted_and_resized_to_28x28(tmp_path: Path) -> None:
    big = np.kron(digit(200), np.ones((4, 4), dtype=np.uint8))  # 112x112, the same picture
    rgb = np.stack([big, big, big], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "big.png")
    Image.fromarray(rgb).save(tmp_path / "big.jpg", quality=95)
    for name in ("big.png", "big.jpg"):
        pixels = read_image(tmp_path / name)
        assert pixels.shape == (28, 28) and pixels.dtype == np.uint8
        assert np.abs(pixels.astype(int) - digit(200)).mean() < 6, name


def test_a_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    Image.fromarray(digit(200).astype(np.uint16) * 257).save(tmp_path / "deep.png")
    assert np.array_equal(read_image(tmp_path / "deep.png"), digit(200))


def test_a_process_pool_decodes_what_one_process_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(600):
        paths.append(tmp_path / f"{i:03d}.png")
        paths[-1].write_bytes(png_bytes(rng.integers(0, 256, size=(28, 28), dtype=np.uint8)))
    monkeypatch.setattr(image_folder, "PARALLEL_FROM", 100)
    assert np.array_equal(read_images(paths, workers=2), read_images(paths, workers=1))


def test_decoded_images_are_cached_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_dataset(tmp_path / "data", {"a": 3, "b": 3}, {"a": 2, "b": 1})
    first = load_image_folder(tmp_path / "data", tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("images-*.npz"))) == 1

    def no_decoding(path: Path) -> None:
        raise AssertionError(f"decoded {path} again")

    with monkeypatch.context() as patch:
        patch.setattr(image_folder, "read_image", no_decoding)
        again = load_image_folder(tmp_path / "data", tmp_path / "cache")
    assert np.array_equal(again.x_train, first.x_train) and again.class_names == first.class_names
    # A changed image changes the key: decoded again, into a second cache file.
    (tmp_path / "data" / "training" / "b" / "000.png").write_bytes(png_bytes(digit(255)))
    changed = load_image_folder(tmp_path / "data", tmp_path / "cache")
    assert np.array_equal(changed.x_train[3], digit(255))
    assert len(list((tmp_path / "cache").glob("images-*.npz"))) == 2
