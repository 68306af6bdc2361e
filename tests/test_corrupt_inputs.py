"""Corrupt and odd inputs in the loaders: each is refused with one line of the package's own
exceptions, or skipped with a note, and the user's files are never modified. Real files in tmp_path."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pseudolabel.datasets import load_arrays, load_dataset, load_image_folder, read_images
from pseudolabel.exceptions import DataError, InputError
from pseudolabel.review.images import open_image_source

# Part of the reliability suite (`make reliability`, docs/reliability.md); `make test` runs it too.
pytestmark = pytest.mark.reliability


def hashes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(kind, call, *args, **kwargs) -> str:
    with pytest.raises(kind) as info:
        call(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg and len(msg) < 400, msg
    return msg


def png(path: Path, value: int = 0, size=(8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)
    return path


@pytest.fixture
def npz(tmp_path):
    """A good .npz of 6 labeled 4x4 float samples."""
    path = tmp_path / "good.npz"
    X = np.random.default_rng(0).random((6, 4, 4))
    np.savez(path, X=X, y=[0, 1, 2, 0, 1, 2])
    return path


# ------------------------------------------------------------------------------------------- .npz

def test_truncated_npz_is_refused_by_loaders_and_the_review_page(tmp_path, npz):
    cut = tmp_path / "truncated.npz"
    data = npz.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    before = hashes(tmp_path)
    for call in (load_dataset, load_arrays, open_image_source):
        msg = one_line_error(DataError, call, cut)
        assert msg.startswith(f"{cut} is truncated or not a .npz (") and msg.endswith("re-create it with numpy.savez.")
    # A flipped byte inside an array (the zip directory intact) is found when the array is read.
    bad = bytearray(data)
    bad[len(bad) // 3] ^= 0xFF
    flipped = tmp_path / "flipped.npz"
    flipped.write_bytes(bytes(bad))
    assert "Bad CRC-32" in one_line_error(DataError, load_dataset, flipped)
    source = open_image_source(flipped)  # arrays load on first use
    assert "is truncated or not a .npz" in one_line_error(DataError, source.png, "X:0")
    (tmp_path / "text.npz").write_text("not a zip")
    assert "is truncated or not a .npz" in one_line_error(DataError, load_dataset, tmp_path / "text.npz")
    np.save(tmp_path / "one.npy", np.zeros((3, 4, 4)))
    (tmp_path / "one.npz").write_bytes((tmp_path / "one.npy").read_bytes())
    assert "holds a single array (.npy format)" in one_line_error(DataError, load_dataset, tmp_path / "one.npz")
    (tmp_path / "cut.npy").write_bytes((tmp_path / "one.npy").read_bytes()[:100])
    assert "is truncated or not a .npy" in one_line_error(DataError, open_image_source, tmp_path / "cut.npy")
    assert {k: v for k, v in hashes(tmp_path).items() if k in before} == before


def test_nan_images_are_refused_first_with_the_count_of_rows(tmp_path):
    np.savez(tmp_path / "all_nan.npz", X=np.full((5, 4, 4), np.nan), y=[0, 1, 0, 1, 0])  # every sample labeled
    np.savez(tmp_path / "no_y.npz", X=np.full((5, 4, 4), np.nan))
    X = np.zeros((6, 4, 4))
    X[1, 2, 3], X[4, 0, 0] = np.nan, -np.inf
    np.savez(tmp_path / "some.npz", X=X, y=[0, 1, -5, 0, 1, 0])  # bad labels too: the NaN is named first
    np.savez(tmp_path / "test_nan.npz", X=np.zeros((4, 2)), y=[0, 1, 0, 1], x_test=np.full((2, 2), np.inf),
             y_test=[0, 1])
    before = hashes(tmp_path)
    for name in ("all_nan", "no_y"):
        msg = one_line_error(DataError, load_dataset, tmp_path / f"{name}.npz")
        assert "holds NaN or infinity in 5 of 5 samples (rows 0, 1, 2, 3, 4)" in msg and "drop or impute" in msg
    msg = one_line_error(DataError, load_arrays, tmp_path / "some.npz")
    assert msg == (f"X in {tmp_path / 'some.npz'} holds NaN or infinity in 2 of 6 samples (rows 1, 4); "
                   "drop or impute those rows and save the file again.")
    assert "x_test in" in one_line_error(DataError, load_dataset, tmp_path / "test_nan.npz")
    assert hashes(tmp_path) == before


@pytest.mark.parametrize("arrays, expected", [
    (dict(X=np.arange(5.0), y=[0, 1, 0, 1, 0]), r"X in .* has shape \(5,\), one number per sample"),
    (dict(X=np.zeros((0, 4, 4))), r"X in .* holds no samples"),
    (dict(X=np.array(["a", "b"])), r"X in .* has dtype <U1, expected numbers"),
    (dict(X=np.zeros((5, 4, 4)), y=[0, 1, 0]), r"X has 5 samples but y has 3"),
    (dict(x_train=np.zeros((3, 4)), y_train=[0, -2, 1]), r"contains the label -2; labels must be >= 0 with -1"),
    (dict(X=np.zeros((3, 4)), y=[0, 1.5, 1]), r"integer class labels, found 1.5"),
    (dict(X=np.zeros((3, 4)), y=["a", "b", "c"]), r"integer class labels, got dtype <U1"),
    (dict(X=np.zeros((3, 4)), y=np.zeros((3, 2))), r"must be one-dimensional, got shape \(3, 2\)"),
    (dict(X=np.zeros((3, 4)), y=[0, 1, 0], x_test=np.zeros((2, 4))), r"holds x_test but no y_test"),
    (dict(X=np.zeros((3, 4)), y=[0, 1, 0], x_test=np.zeros((2, 5)), y_test=[0, 1]),
     r"x_test holds samples of shape \(5,\) but X of shape \(4,\)"),
    (dict(X=np.zeros((3, 4)), y=[0, 1, 0], x_test=np.zeros((2, 4)), y_test=[0, -1]), r"y_test in .* label -1"),
    (dict(X=np.zeros((3, 4)), y=[0, 1, 0], x_test=np.zeros((2, 4)), y_test=[0]), r"x_test has 2 samples but y_test has 1"),
])
def test_bad_arrays_are_one_line(tmp_path, arrays, expected):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    before = hashes(tmp_path)
    msg = one_line_error(DataError, load_dataset, path)
    assert re.search(expected, msg), msg
    assert hashes(tmp_path) == before


# ---------------------------------------------------------------------------------- image folders

def test_mixed_sizes_resize_to_the_most_common_or_the_declared_size(tmp_path):
    root = tmp_path / "pets"
    png(root / "cat" / "a.png", 10, size=(12, 10))  # the first file has the odd size
    for i in range(3):
        png(root / "cat" / f"b{i}.png", 20, size=(8, 8))
        png(root / "dog" / f"c{i}.png", 30, size=(8, 8))
    png(root / "dog" / "d.png", 40, size=(6, 6))
    before = hashes(tmp_path)
    ds = load_image_folder(root)
    assert ds.image_size is None and ds.notes == []
    notes = []
    X = read_images(ds.X, size=ds.image_size, notes=notes)
    assert X.shape == (8, 8, 8) and X[0].min() == X[0].max() == 10  # resized, not cropped
    assert notes == ["2 of 8 images are not 8x8 (height x width; the most common size; others: 12x10 (1), 6x6 (1)) "
                     "and were resized to it; pass size=(H, W) (image_size=, CLI --image-size) to choose the size"]
    with pytest.warns(UserWarning, match="2 of 8 images are not 8x8"):
        read_images(ds.X)
    declared = load_dataset(root, image_size=(5, 7))
    assert declared.image_size == (5, 7)
    assert read_images(declared.X, size=declared.image_size, notes=notes).shape == (8, 5, 7) and len(notes) == 1
    # No size shared by half the images: the median height and width.
    spread = [png(tmp_path / "spread" / f"{i}.png", i, size=(4 + 2 * i, 20 - 2 * i)) for i in range(5)]
    assert read_images(spread, notes=notes).shape == (5, 8, 16) and "median height and width" in notes[-1]
    assert "image_size must be None, an int or (height, width)" in one_line_error(
        InputError, load_image_folder, root, image_size=(0, 4))
    assert "applies to image folders, not to 'digits'" in one_line_error(
        InputError, load_dataset, "digits", image_size=8)
    assert {k: v for k, v in hashes(tmp_path).items() if k in before} == before


def _folder_with_bad_files(root: Path) -> tuple[Path, Path]:
    for c in ("0", "1"):
        for i in range(6):
            png(root / c / f"{i}.png", 40 * i)
    noise = np.random.default_rng(0).integers(0, 255, (8, 8), dtype=np.uint8)
    buffer = root / "buffer.png"
    Image.fromarray(noise).save(buffer)
    cut_png = root / "1" / "cut.png"
    cut_png.write_bytes(buffer.read_bytes()[:70])  # the header whole, the image data cut short
    Image.fromarray(np.tile(noise, (4, 4))).save(buffer.with_suffix(".jpg"), quality=90)
    cut_jpg = root / "0" / "cut.jpg"
    data = buffer.with_suffix(".jpg").read_bytes()
    cut_jpg.write_bytes(data[: len(data) - 100])  # a photo cut short: its header whole
    buffer.unlink()
    buffer.with_suffix(".jpg").unlink()
    (root / "1" / "notes.txt").write_text("not an image")
    (root / "1" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return cut_png, cut_jpg


def test_corrupt_images_are_refused_by_default_naming_the_file_and_the_option(tmp_path):
    root = tmp_path / "data"
    cut_png, cut_jpg = _folder_with_bad_files(root)
    before = hashes(tmp_path)
    ds = load_dataset(root)  # listing does not decode: the refusal comes with the one decode
    assert len(ds) == 14 and ds.notes == [f"skipped 1 file(s) in {root} that are not images by their ending: "
                                          "1/notes.txt; pass extensions= to count other endings as images"]
    msg = one_line_error(DataError, read_images, ds.X)
    assert msg.startswith(f"cannot read image {cut_jpg}: image file is truncated")
    assert "skip_bad=True (CLI: --skip-bad-images)" in msg and msg.endswith("remove or replace it.")
    (root / "0" / "cut.jpg").rename(root / "0" / "cut.jpg.bak")  # the PNG alone is refused too
    try:
        msg = one_line_error(DataError, read_images, load_dataset(root).X)
        assert msg.startswith(f"cannot read image {cut_png}:")
    finally:
        (root / "0" / "cut.jpg.bak").rename(cut_jpg)
    assert hashes(tmp_path) == before


def test_skip_bad_leaves_corrupt_images_out_with_a_note(tmp_path):
    root = tmp_path / "data"
    _folder_with_bad_files(root)
    (root / "1" / "text.png").write_text("a text file with an image ending")
    before = hashes(tmp_path)
    ds = load_image_folder(root, skip_bad=True)
    assert len(ds) == 12 and ds.classes == ["0", "1"] and "1/cut.png" not in ds.items
    skipped = ds.notes[-1]
    assert skipped.startswith(f"skipped 3 of 15 images in {root} that cannot be read: 0/cut.jpg (image file is "
                              "truncated") and "1/cut.png (" in skipped and "1/text.png (" in skipped
    assert "\n" not in skipped and str(root / "1") not in skipped  # the reason does not repeat the path
    X = read_images(ds.X)
    assert X.shape == (12, 8, 8) and ds.y.tolist() == [0] * 6 + [1] * 6
    assert load_dataset(root, skip_bad=True).items == ds.items  # load_dataset passes it on
    only_bad = tmp_path / "only_bad"
    (only_bad / "x").mkdir(parents=True)
    (only_bad / "x" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot the rest")
    msg = one_line_error(DataError, load_image_folder, only_bad, skip_bad=True)
    assert msg.startswith(f"none of the 1 images in {only_bad} can be read (first x/a.png:")
    assert hashes(tmp_path) == {**before, "only_bad/x/a.png": hashes(tmp_path)["only_bad/x/a.png"]}


def test_hidden_and_system_folders_are_not_classes(tmp_path):
    root = tmp_path / "data"
    png(root / "cat" / "1.png")
    png(root / "dog" / "2.png")
    png(root / "__MACOSX" / "cat" / "._1.png")
    png(root / "__MACOSX" / "stray.png")
    png(root / ".git" / "logo.png")
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    png(root / "cat" / ".ipynb_checkpoints" / "1-checkpoint.png")
    before = hashes(tmp_path)
    ds = load_dataset(root)
    assert ds.classes == ["cat", "dog"] and ds.items == ["cat/1.png", "dog/2.png"]
    assert ds.notes == [f"ignored 3 hidden or system folder(s) in {root}, not classes: .git, __MACOSX, "
                        "cat/.ipynb_checkpoints"]
    assert hashes(tmp_path) == before


def test_manifest_naming_missing_files_counts_them(tmp_path):
    root = tmp_path / "data"
    png(root / "a" / "1.png")
    png(root / "b" / "2.png")
    manifest = root / "labels.csv"
    manifest.write_text("path,label\na/1.png,a\ngone/1.png,b\nb/2.png,b\ngone/2.png,a\n../outside.png,a\n")
    before = hashes(tmp_path)
    for call in (lambda: load_dataset(manifest), lambda: load_image_folder(root, manifest="labels.csv")):
        msg = one_line_error(DataError, call)
        assert msg == (f"manifest {manifest} names 3 of 5 file(s) that are not under {root}, the first "
                       "'gone/1.png' on line 3; give paths relative to the image folder, or remove those rows.")
    manifest.write_text("path,label\na/1.png,a\nb/2.png,\n")
    ds = load_dataset(manifest)
    assert ds.notes == [] and ds.y.tolist() == [0, -1]  # the manifest itself is no stray file
    assert hashes(tmp_path) == {**before, "data/labels.csv": hashes(tmp_path)["data/labels.csv"]}
