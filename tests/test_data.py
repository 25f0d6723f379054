"""snrkit.data: the real data sets load exactly, and every malformed MNIST file is caught.

Malformed-file tests write small synthetic IDX files (same format as MNIST, a few 4x3
images) into ``tmp_path``; the real MNIST test set is used when present and skipped
cleanly when not.
"""

from __future__ import annotations

import dataclasses
import gzip
import struct
from pathlib import Path

import jax
import numpy as np
import pytest

from snrkit import data as sd
from snrkit.data import DataError, Dataset

MNIST_DIR = Path(sd.__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"
# Published class counts of the MNIST test set (t10k), digit 0 to 9.
MNIST_T10K_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
# scikit-learn's digits: 1797 images, class counts as documented by load_digits.
DIGITS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def _key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="threefry2x32")


# ---------------------------------------------------------------- synthetic IDX files


def idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    """An IDX file: big-endian magic, big-endian dims, then the raw bytes."""
    return struct.pack(">i", magic) + struct.pack(f">{len(dims)}I", *dims) + payload


def write(path: Path, content: bytes, *, gz: bool) -> Path:
    if gz:
        path = path.with_name(path.name + ".gz")
        content = gzip.compress(content)
    path.write_bytes(content)
    return path


def small_mnist(folder: Path, *, n: int = 5, gz: bool = True, split: str = "t10k", seed: int = 0):
    """A valid MNIST-format folder with n random 4x3 images; returns (pixels, labels)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    images = idx_bytes(2051, (n, 4, 3), pixels.tobytes())
    write(folder / f"{split}-images-idx3-ubyte", images, gz=gz)
    write(folder / f"{split}-labels-idx1-ubyte", idx_bytes(2049, (n,), labels.tobytes()), gz=gz)
    return pixels, labels


# ---------------------------------------------------------------- digits


def test_digits_are_sklearn_digits_scaled_exactly_into_unit_interval():
    from sklearn.datasets import load_digits

    ds = sd.load_digits()
    ref = load_digits()
    assert ds.name == "digits" and ds.num_classes == 10
    assert ds.images.shape == (1797, 8, 8) and ds.images.dtype == np.float32
    assert ds.labels.shape == (1797,) and ds.labels.dtype == np.int32
    # Pixels are 0..16 integers, so /16 is exact in float32: compare with ==.
    np.testing.assert_array_equal(ds.images, (ref.images / 16).astype(np.float32))
    np.testing.assert_array_equal(ds.labels, ref.target)
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    assert ds.class_counts().tolist() == DIGITS_COUNTS
    assert ds.num_examples == 1797 and ds.image_shape == (8, 8) and ds.input_dim == 64


def test_flat_take_and_subset():
    ds = sd.load_digits()
    flat = ds.flat()
    assert flat.shape == (1797, 64) and flat.dtype == np.float32
    np.testing.assert_array_equal(flat[3], ds.images[3].ravel())

    head = ds.take(10)
    np.testing.assert_array_equal(head.images, ds.images[:10])
    np.testing.assert_array_equal(head.labels, ds.labels[:10])
    assert head.name == ds.name and head.num_classes == ds.num_classes

    a, b = ds.subset(_key(1), 50), ds.subset(_key(1), 50)
    np.testing.assert_array_equal(a.images, b.images)  # a function of the key only
    assert not np.array_equal(a.labels, ds.subset(_key(2), 50).labels)
    # All N drawn without replacement is a reordering: same class counts, same pixel sum.
    whole = ds.subset(_key(3), ds.num_examples)
    assert whole.class_counts().tolist() == DIGITS_COUNTS
    assert not np.array_equal(whole.labels, ds.labels)

    for bad, error, message in ((0, ValueError, "num must be at least 1"), (-1, ValueError, "num must be at least 1"),
                                (1798, ValueError, "num must be at most 1797"), (2.5, TypeError, "num must be a positive int"),
                                (True, TypeError, "num must be a positive int")):
        with pytest.raises(error, match=message):
            ds.take(bad)


def test_dataset_is_frozen_and_validated():
    ds = sd.load_digits()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        ds.images[0, 0, 0] = 0.5
    # The caller's own array stays writable: only the dataset's view is frozen.
    mine = np.zeros((2, 3, 3), np.float32)
    Dataset(mine, np.array([0, 1]), 2, "toy")
    mine[0, 0, 0] = 1.0
    assert "float32[1797,8,8]" in repr(ds) and len(repr(ds)) < 120

    ok_images, ok_labels = np.zeros((2, 3, 3)), np.array([0, 1])
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        Dataset(ok_images + 2.0, ok_labels, 2, "toy")
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        Dataset(np.full((2, 3, 3), np.nan), ok_labels, 2, "toy")
    with pytest.raises(DataError, match="labels must lie"):
        Dataset(ok_images, np.array([0, 2]), 2, "toy")
    with pytest.raises(DataError, match=r"shape \(N, H, W\)"):
        Dataset(np.zeros((2, 9)), ok_labels, 2, "toy")
    with pytest.raises(DataError, match="labels must have shape"):
        Dataset(ok_images, np.array([0, 1, 1]), 2, "toy")
    with pytest.raises(DataError, match="integers"):
        Dataset(ok_images, np.array([0.0, 1.0]), 2, "toy")
    assert issubclass(DataError, ValueError)


# ---------------------------------------------------------------- the real MNIST test set


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST test set not found at {MNIST_DIR}")
    return sd.load_mnist(MNIST_DIR)


def test_real_mnist_test_set(mnist: Dataset):
    assert mnist.name == "mnist" and mnist.num_classes == 10
    assert mnist.images.shape == (10000, 28, 28) and mnist.images.dtype == np.float32
    assert mnist.labels.dtype == np.int32
    assert mnist.class_counts().tolist() == MNIST_T10K_COUNTS
    # The first ten test labels, as every MNIST tutorial prints them.
    assert mnist.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert mnist.images.min() == 0.0 and mnist.images.max() == 1.0
    # /255 of uint8: every value times 255 is an integer again.
    sample = mnist.images[:50].astype(np.float64) * 255
    np.testing.assert_allclose(sample, np.round(sample), atol=1e-4)


def test_load_dispatches_by_name(mnist: Dataset):
    assert sd.load("digits").name == "digits"
    assert sd.load(" MNIST ", mnist_dir=MNIST_DIR).num_examples == mnist.num_examples


# ---------------------------------------------------------------- synthetic IDX: good files


def test_raw_and_gzipped_files_load_identically(tmp_path: Path):
    raw_dir, gz_dir = tmp_path / "raw", tmp_path / "gz"
    raw_dir.mkdir()
    gz_dir.mkdir()
    pixels, labels = small_mnist(raw_dir, gz=False)
    small_mnist(gz_dir, gz=True)  # same seed, same content
    a, b = sd.load_mnist(raw_dir), sd.load_mnist(str(gz_dir))
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.images, pixels.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(a.labels, labels)
    assert a.image_shape == (4, 3)


def test_raw_file_preferred_when_both_exist(tmp_path: Path):
    small_mnist(tmp_path, n=5, gz=True, seed=0)
    _, raw_labels = small_mnist(tmp_path, n=7, gz=False, seed=1)
    ds = sd.load_mnist(tmp_path)
    assert ds.num_examples == 7
    np.testing.assert_array_equal(ds.labels, raw_labels)


def test_train_split_and_split_validation(tmp_path: Path):
    small_mnist(tmp_path, n=6, split="train")
    assert sd.load_mnist(tmp_path, split="train").num_examples == 6
    with pytest.raises(ValueError, match='called "t10k"'):
        sd.load_mnist(tmp_path, split="test")


def test_load_mnist_by_name_needs_a_folder(tmp_path: Path):
    with pytest.raises(ValueError, match="needs mnist_dir"):
        sd.load("mnist")
    small_mnist(tmp_path)
    assert sd.load("mnist", mnist_dir=tmp_path).name == "mnist"
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        sd.load("cifar")


# ---------------------------------------------------------------- synthetic IDX: bad files


def test_missing_folder_says_where_to_download(tmp_path: Path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        sd.load_mnist(missing)
    msg = str(err.value)
    assert str(missing) in msg and "does not exist" in msg
    assert "Download" in msg and "--mnist-dir" in msg and "SNRKIT_MNIST_DIR" in msg

    a_file = tmp_path / "file"
    a_file.write_bytes(b"")
    with pytest.raises(DataError, match="is a file, not a folder"):
        sd.load_mnist(a_file)


def test_missing_file_lists_what_was_looked_for(tmp_path: Path):
    small_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        sd.load_mnist(tmp_path)
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz" in msg
    assert str(tmp_path) in msg and "Download" in msg


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_and_padded_files(tmp_path: Path, gz: bool):
    small_mnist(tmp_path, n=5, gz=gz)
    name = "t10k-images-idx3-ubyte" + (".gz" if gz else "")
    good = idx_bytes(2051, (5, 4, 3), bytes(5 * 4 * 3))
    write(tmp_path / "t10k-images-idx3-ubyte", good[:-7], gz=gz)
    with pytest.raises(DataError, match=rf"{name} is truncated: .*5 x 4 x 3 = 60 bytes.*holds 53"):
        sd.load_mnist(tmp_path)
    write(tmp_path / "t10k-images-idx3-ubyte", good + b"\0", gz=gz)
    with pytest.raises(DataError, match=rf"{name} has trailing bytes"):
        sd.load_mnist(tmp_path)
    write(tmp_path / "t10k-images-idx3-ubyte", good[:10], gz=gz)  # cut inside the header
    with pytest.raises(DataError, match=rf"{name} is truncated: 10 bytes"):
        sd.load_mnist(tmp_path)
    write(tmp_path / "t10k-images-idx3-ubyte", good[:2], gz=gz)
    with pytest.raises(DataError, match="too short for an IDX header"):
        sd.load_mnist(tmp_path)


def test_bad_magic_numbers(tmp_path: Path):
    small_mnist(tmp_path, gz=False)
    images = tmp_path / "t10k-images-idx3-ubyte"
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    pixels = images.read_bytes()[16:]

    # A labels file where the images should be: the message suggests a swap.
    images.write_bytes(labels.read_bytes())
    with pytest.raises(DataError, match=r"magic number 2049 .*expected 2051.*swapped"):
        sd.load_mnist(tmp_path)

    # A little-endian header.
    images.write_bytes(struct.pack("<i", 2051) + struct.pack("<3I", 5, 4, 3) + pixels)
    with pytest.raises(DataError, match="byte-swapped"):
        sd.load_mnist(tmp_path)

    # Not IDX at all (a PNG signature).
    images.write_bytes(b"\x89PNG\r\n\x1a\n" + pixels)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte is not an MNIST IDX images file"):
        sd.load_mnist(tmp_path)

    # IDX, but float32 (type code 0x0D) rather than unsigned bytes.
    images.write_bytes(idx_bytes(0x0D03, (5, 4, 3), bytes(240)))
    with pytest.raises(DataError, match="expected 2051"):
        sd.load_mnist(tmp_path)


def test_image_and_label_count_mismatch(tmp_path: Path):
    small_mnist(tmp_path, n=5)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(2049, (4,), bytes(4)), gz=True)
    with pytest.raises(DataError, match=r"holds 5 images but .* holds 4 labels"):
        sd.load_mnist(tmp_path)


def test_labels_outside_0_to_9_and_empty_files(tmp_path: Path):
    small_mnist(tmp_path, n=3)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(2049, (3,), bytes([1, 12, 3])), gz=True)
    with pytest.raises(DataError, match="holds label 12"):
        sd.load_mnist(tmp_path)

    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(2051, (0, 4, 3), b""), gz=True)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(2049, (0,), b""), gz=True)
    with pytest.raises(DataError, match="holds no images"):
        sd.load_mnist(tmp_path)


def test_corrupted_gzip(tmp_path: Path):
    small_mnist(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    whole = path.read_bytes()

    path.write_bytes(whole[: len(whole) // 2])  # an interrupted download
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz is not a valid gzip file"):
        sd.load_mnist(tmp_path)

    path.write_bytes(b"<html>404 Not Found</html>")  # a web page saved as .gz
    with pytest.raises(DataError, match="Delete it and download it again"):
        sd.load_mnist(tmp_path)

    damaged = bytearray(whole)
    damaged[len(damaged) // 2] ^= 0xFF  # a flipped byte: deflate error or CRC mismatch
    path.write_bytes(bytes(damaged))
    with pytest.raises(DataError, match="not a valid gzip file"):
        sd.load_mnist(tmp_path)


# ---------------------------------------------------------------- default_mnist_dir


def test_default_mnist_dir_prefers_the_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SNRKIT_MNIST_DIR", str(tmp_path))
    assert sd.default_mnist_dir() == tmp_path

    # An environment variable naming no folder is an error, not silently replaced by another folder.
    monkeypatch.setenv("SNRKIT_MNIST_DIR", str(tmp_path / "absent"))
    with pytest.raises(DataError, match="SNRKIT_MNIST_DIR=.*absent is not an existing folder; fix it or unset it"):
        sd.default_mnist_dir()
    expected = MNIST_DIR if MNIST_DIR.is_dir() else None

    monkeypatch.delenv("SNRKIT_MNIST_DIR")
    assert sd.default_mnist_dir() == expected


def test_mnist_input_mistakes_get_the_fix(tmp_path: Path):
    """No folder at all, and gzip bytes under the raw file name (a download not gunzipped)."""
    with pytest.raises(TypeError, match="path must be the folder holding the MNIST IDX files"):
        sd.load_mnist(None)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + bytes(8)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + bytes(4))
    with pytest.raises(DataError, match="gzip-compressed although its name has no .gz suffix: gunzip it"):
        sd.load_mnist(tmp_path)
    with pytest.raises(DataError, match="gunzip it"):
        sd.check_mnist_dir(tmp_path)
