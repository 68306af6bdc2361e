"""Tests of pseudolabel.datasets: real files written to tmp_path, a real HTTP server on 127.0.0.1,
the real MNIST file, and label-noise invariants."""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pseudolabel.datasets import (
    MNIST_SHA256, Dataset, inject_noise, load_arrays, load_dataset, load_digits, load_image_folder,
    load_mnist, read_idx, read_images,
)
from pseudolabel.exceptions import DataError, InputError

GZ_NAMES = list(MNIST_SHA256)  # train-images, train-labels, t10k-images, t10k-labels


def write_idx(path: Path, array: np.ndarray, compress: bool) -> Path:
    """Write an IDX file by hand: magic (0, 0, dtype code, ndim), big-endian dims, big-endian data."""
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}[array.dtype]
    payload = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def small_mnist(rng: np.random.RandomState, n_train: int = 50, n_test: int = 20) -> dict:
    return {
        "x_train": rng.randint(0, 256, (n_train, 28, 28)).astype(np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.randint(0, 256, (n_test, 28, 28)).astype(np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
    }


def write_mnist_idx(folder: Path, arrays: dict, compress: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, gz_name in zip(("x_train", "y_train", "x_test", "y_test"), GZ_NAMES):
        write_idx(folder / (gz_name if compress else gz_name[:-3]), arrays[key], compress)
    return folder


def assert_same_mnist(ds: Dataset, arrays: dict) -> None:
    np.testing.assert_array_equal(ds.X, arrays["x_train"])
    np.testing.assert_array_equal(ds.y, arrays["y_train"])
    np.testing.assert_array_equal(ds.X_test, arrays["x_test"])
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    assert ds.y.dtype == np.int64 and ds.name == "mnist"
    assert ds.items[:2] == ["train/0", "train/1"] and ds.items_test[3] == "test/3"


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("PSEUDOLABEL_DATA", raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


# ------------------------------------------------------------------------------------------------ IDX

@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_idx_round_trip(tmp_path, compress, dtype):
    array = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype) if dtype != np.uint8 else \
        np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    back = read_idx(write_idx(tmp_path / "a.idx", array, compress))
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_idx_corrupt_and_truncated(tmp_path):
    good = write_idx(tmp_path / "good", np.zeros((4, 28, 28), np.uint8), compress=False)
    (tmp_path / "short").write_bytes(good.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"truncated or corrupt"):
        read_idx(tmp_path / "short")
    (tmp_path / "junk").write_bytes(b"PK\x03\x04 not idx at all")
    with pytest.raises(DataError, match=r"not an IDX file"):
        read_idx(tmp_path / "junk")
    noisy = write_idx(tmp_path / "noisy", np.random.RandomState(0).randint(0, 256, (4, 9), np.uint8), False)
    (tmp_path / "bad.gz").write_bytes(gzip.compress(noisy.read_bytes())[:-12])  # cut inside the stream
    with pytest.raises(DataError, match=r"cannot read IDX file .*bad\.gz"):
        read_idx(tmp_path / "bad.gz")
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope")


# ------------------------------------------------------------------------------- MNIST local sources

def test_mnist_from_npz_and_idx_dirs(tmp_path, no_env):
    arrays = small_mnist(np.random.RandomState(0))
    np.savez(tmp_path / "mnist.npz", **arrays)
    assert_same_mnist(load_mnist(tmp_path / "mnist.npz"), arrays)
    assert_same_mnist(load_mnist(tmp_path), arrays)  # a folder holding mnist.npz
    assert_same_mnist(load_mnist(write_mnist_idx(tmp_path / "gz", arrays)), arrays)
    assert_same_mnist(load_mnist(write_mnist_idx(tmp_path / "raw", arrays, compress=False)), arrays)
    assert_same_mnist(load_dataset(str(tmp_path / "raw")), arrays)


def test_mnist_explicit_path_errors(tmp_path, no_env):
    with pytest.raises(DataError, match=r"does not exist; set PSEUDOLABEL_DATA"):
        load_mnist(tmp_path / "missing")
    with pytest.raises(DataError, match=r"holds neither mnist.npz nor the four IDX files"):
        load_mnist(tmp_path)
    np.savez(tmp_path / "other.npz", X=np.zeros(3))
    with pytest.raises(DataError, match=r"lacks the array\(s\) x_train, y_train, x_test, y_test"):
        load_mnist(tmp_path / "other.npz")
    arrays = small_mnist(np.random.RandomState(0))
    arrays["y_train"] = arrays["y_train"][:-1]
    np.savez(tmp_path / "uneven.npz", **arrays)
    with pytest.raises(DataError, match=r"inconsistent"):
        load_mnist(tmp_path / "uneven.npz")


def test_mnist_precedence_path_then_env_then_cache(tmp_path, monkeypatch, no_env):
    rng = np.random.RandomState(1)
    a, b, c = small_mnist(rng, 10), small_mnist(rng, 12), small_mnist(rng, 14)
    np.savez(tmp_path / "explicit.npz", **a)
    write_mnist_idx(tmp_path / "env", b)
    write_mnist_idx(tmp_path / "cache" / "mnist", c)
    cache = tmp_path / "cache"
    monkeypatch.setenv("PSEUDOLABEL_DATA", str(tmp_path / "env"))
    assert len(load_mnist(tmp_path / "explicit.npz", cache_dir=cache)) == 10
    assert len(load_mnist(cache_dir=cache, download=False)) == 12
    monkeypatch.setenv("PSEUDOLABEL_DATA", str(tmp_path / "explicit.npz"))  # a file works too
    assert len(load_mnist(cache_dir=cache, download=False)) == 10
    monkeypatch.setenv("PSEUDOLABEL_DATA", str(tmp_path / "empty-dir"))  # nothing there: the cache
    assert len(load_mnist(cache_dir=cache, download=False)) == 14
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    write_mnist_idx(tmp_path / "xdg" / "pseudolabel" / "mnist", a)
    assert len(load_mnist(download=False)) == 10


def test_mnist_not_found_without_download(tmp_path, no_env):
    with pytest.raises(DataError) as info:
        load_mnist(cache_dir=tmp_path, download=False)
    msg = str(info.value)
    assert "\n" not in msg and "PSEUDOLABEL_DATA (not set)" in msg and str(tmp_path / "mnist") in msg
    assert "set PSEUDOLABEL_DATA" in msg and "path=" in msg


def test_real_mnist(mnist_path, no_env):
    ds = load_mnist(mnist_path)
    assert ds.X.shape == (60000, 28, 28) and ds.X.dtype == np.uint8
    assert ds.X_test.shape == (10000, 28, 28) and ds.y_test.dtype == np.int64
    counts = np.bincount(ds.y, minlength=10)
    assert counts[0] == 5923 and counts[1] == 6742 and counts.sum() == 60000
    assert ds.classes == [str(k) for k in range(10)] and (ds.y >= 0).all()
    assert len(ds.items) == 60000 and len(set(ds.items)) == 60000


# ------------------------------------------------------------------------------------ MNIST download

@pytest.fixture
def mirror(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www; yields (base URL, folder)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", www
    finally:
        server.shutdown()
        server.server_close()


def sha256_of(folder: Path) -> dict:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in GZ_NAMES}


def test_download_puts_checked_files_in_cache(tmp_path, mirror, no_env):
    url, www = mirror
    arrays = small_mnist(np.random.RandomState(2))
    write_mnist_idx(www / "mnist", arrays)
    calls = []
    cache = tmp_path / "cache"
    ds = load_mnist(cache_dir=cache, mirrors=[url + "/mnist/"], sha256=sha256_of(www / "mnist"),
                    progress=lambda *a: calls.append(a))
    assert_same_mnist(ds, arrays)
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(GZ_NAMES)
    assert {c[0] for c in calls} == set(GZ_NAMES) and all(c[1] <= c[2] for c in calls)
    # The second call reads the cache: the server's files can go.
    for f in (www / "mnist").iterdir():
        f.unlink()
    assert_same_mnist(load_mnist(cache_dir=cache, mirrors=[url + "/mnist/"], download=False), arrays)


def test_download_bad_checksum_leaves_nothing(tmp_path, mirror, no_env):
    url, www = mirror
    write_mnist_idx(www / "mnist", small_mnist(np.random.RandomState(3)))
    checks = sha256_of(www / "mnist")
    checks[GZ_NAMES[0]] = "0" * 64
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        load_mnist(cache_dir=cache, mirrors=[url + "/mnist"], sha256=checks)
    msg = str(info.value)
    assert GZ_NAMES[0] in msg and "bad checksum" in msg and "PSEUDOLABEL_DATA" in msg and "\n" not in msg
    assert list((cache / "mnist").iterdir()) == []  # no partial or unchecked file


def test_download_falls_through_to_second_mirror(tmp_path, mirror, no_env):
    url, www = mirror
    arrays = small_mnist(np.random.RandomState(4))
    write_mnist_idx(www / "good", arrays)
    ds = load_mnist(cache_dir=tmp_path / "cache", mirrors=[url + "/missing/", url + "/good/"],
                    sha256=sha256_of(www / "good"))
    assert_same_mnist(ds, arrays)


def test_download_all_mirrors_fail(tmp_path, mirror, no_env):
    url, _ = mirror
    with pytest.raises(DataError, match=r"every mirror failed: .*404"):
        load_mnist(cache_dir=tmp_path / "cache", mirrors=[url + "/missing/"])


# ---------------------------------------------------------------------------------- digits, arrays

def test_digits():
    ds = load_digits()
    assert ds.X.shape[1:] == (8, 8) and ds.X.dtype == np.float32
    assert len(ds) + len(ds.y_test) == 1797 and abs(len(ds.y_test) / 1797 - 0.25) < 0.01
    assert 0 <= ds.X.min() and ds.X.max() <= 16
    # Stratified and fixed: each class keeps its share, and a second call gives the same split.
    share = np.bincount(ds.y, minlength=10) / len(ds.y)
    share_test = np.bincount(ds.y_test, minlength=10) / len(ds.y_test)
    assert np.abs(share - share_test).max() < 0.01
    np.testing.assert_array_equal(load_digits().X, ds.X)
    assert load_dataset("digits").name == "digits"


def test_load_arrays(tmp_path):
    X = np.random.RandomState(0).rand(6, 4, 4).astype(np.float32)
    np.savez(tmp_path / "mine.npz", X=X, y=[0, 2, -1, 1, -1, 2], x_test=X[:2], y_test=[1, 0])
    ds = load_dataset(tmp_path / "mine.npz")
    np.testing.assert_array_equal(ds.X, X)
    assert ds.y.tolist() == [0, 2, -1, 1, -1, 2] and ds.y.dtype == np.int64
    assert ds.classes == ["0", "1", "2"] and ds.y_test.tolist() == [1, 0] and ds.name == "mine"
    np.savez(tmp_path / "nolabels.npz", x=X, classes=["cat", "dog"])
    ds = load_arrays(tmp_path / "nolabels.npz")
    assert (ds.y == -1).all() and ds.classes == ["cat", "dog"]
    np.savez(tmp_path / "short.npz", X=X, y=[0, 1])
    with pytest.raises(DataError, match=r"X has 6 samples but y has 2"):
        load_arrays(tmp_path / "short.npz")
    np.savez(tmp_path / "float.npz", X=X, y=[0.5] * 6)
    with pytest.raises(DataError, match=r"integer class labels"):
        load_arrays(tmp_path / "float.npz")
    np.savez(tmp_path / "none.npz", labels=[1])
    with pytest.raises(DataError, match=r"holds no images .*labels"):
        load_arrays(tmp_path / "none.npz")
    (tmp_path / "fake.npz").write_text("not a zip")
    with pytest.raises(DataError, match=r"fake\.npz is truncated or not a \.npz \(.*\); re-create it"):
        load_arrays(tmp_path / "fake.npz")


def test_load_dataset_rejects_unknown(tmp_path):
    with pytest.raises(InputError) as info:
        load_dataset("mnits")
    assert "'mnist', 'digits', a folder of images" in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match="is neither a folder"):
        load_dataset(tmp_path / "notes.txt")


# ------------------------------------------------------------------------------------ image folders

def save_png(path: Path, value: int, size=(10, 12), rgb: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    array = np.full((h, w, 3) if rgb else (h, w), value, np.uint8)
    if rgb:
        array[..., 0] = 255 - value  # a real colour image: the channels differ
    Image.fromarray(array).save(path)
    return path


def test_image_folder_layout(tmp_path):
    for cls in ("2", "10", "9"):
        save_png(tmp_path / cls / "a.png", int(cls))
    save_png(tmp_path / "9" / "b.PNG", 9)
    save_png(tmp_path / "loose.png", 1)
    save_png(tmp_path / "unlabeled" / "u.png", 2)
    save_png(tmp_path / ".hidden" / "h.png", 3)
    (tmp_path / "2" / "notes.txt").write_text("not an image")
    ds = load_dataset(tmp_path)
    assert ds.classes == ["2", "9", "10"]  # numeric order
    labels = dict(zip(ds.items, ds.y.tolist()))
    assert labels == {"10/a.png": 2, "2/a.png": 0, "9/a.png": 1, "9/b.PNG": 1, "loose.png": -1,
                      "unlabeled/u.png": -1}
    assert ds.items == sorted(ds.items) and ds.root == tmp_path.resolve()
    assert all(Path(x).is_absolute() and Path(x).is_file() for x in ds.X) and ds.X.dtype == object
    names = load_image_folder(tmp_path, extensions=(".png",))
    assert "9/b.PNG" in names.items  # endings match case-insensitively


def test_image_folder_manifest_overrides(tmp_path):
    save_png(tmp_path / "cat" / "1.png", 10)
    save_png(tmp_path / "cat" / "2.png", 20)
    save_png(tmp_path / "dog" / "3.png", 30)
    save_png(tmp_path / "4.png", 40)
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label\ncat/2.png,dog\n./dog/3.png,\ndog/../4.png, bird\n")
    ds = load_image_folder(tmp_path, manifest=manifest)
    assert ds.classes == ["bird", "cat", "dog"]
    assert dict(zip(ds.items, ds.y.tolist())) == {"4.png": 0, "cat/1.png": 1, "cat/2.png": 2, "dog/3.png": -1}
    assert load_dataset(manifest).y.tolist() == ds.y.tolist()  # a CSV names its folder
    manifest.write_text("file,label\n4.png,cat\n")
    with pytest.raises(DataError, match=r"expected 'path' and 'label'"):
        load_image_folder(tmp_path, manifest=manifest)
    manifest.write_text("path,label\n4.png,cat\n./4.png,dog\n")
    with pytest.raises(DataError, match=r"lists 4.png twice \(line 3\)"):
        load_image_folder(tmp_path, manifest=manifest)
    manifest.write_text("path,label\nmissing.png,cat\n")
    with pytest.raises(DataError, match=r"names 1 of 1 file\(s\) that are not under .*, the first 'missing.png' on line 2;"):
        load_image_folder(tmp_path, manifest=manifest)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "readme.txt").write_text("x")
    with pytest.raises(DataError) as info:
        load_image_folder(tmp_path / "empty")
    msg = str(info.value)
    assert msg.startswith(f"no images found in {tmp_path / 'empty'}") and "<class>/<image>.png" in msg
    with pytest.raises(DataError, match="no images found"):
        load_dataset(tmp_path / "empty")


# ----------------------------------------------------------------------------------------- images

def test_read_images_grey_rgb_resize(tmp_path):
    grey = [save_png(tmp_path / f"g{i}.png", 50 * i, size=(10, 12)) for i in range(3)]
    out = read_images(grey)
    assert out.shape == (3, 10, 12) and out.dtype == np.uint8
    assert out[:, 0, 0].tolist() == [0, 50, 100]
    rgb = save_png(tmp_path / "c.png", 60, size=(20, 8), rgb=True)
    Image.open(grey[1]).convert("RGB").save(tmp_path / "g1.jpg", quality=95)
    with pytest.warns(UserWarning, match=r"1 of 3 images are not 10x12 .*the most common size; others: 20x8 \(1\)"):
        mixed = read_images(np.array([str(grey[1]), str(rgb), str(tmp_path / "g1.jpg")], dtype=object))
    assert mixed.shape == (3, 10, 12, 3)  # one colour image makes all RGB; the most common size
    assert mixed[1, 5, 5].tolist() == [195, 60, 60]  # the channels survive the resize
    assert abs(int(mixed[2, 5, 5, 0]) - 50) <= 2  # JPEG is lossy
    small = read_images(grey + [rgb], size=(4, 5), mode="L")
    assert small.shape == (4, 4, 5) and small[1].min() == small[1].max() == 50
    many = read_images([grey[2]] * 100, size=7, n_threads=4)
    assert many.shape == (100, 7, 7) and (many == 100).all()
    # Threads give what one thread gives, also when a colour file turns up among grey ones.
    paths = grey * 4 + [rgb] + grey * 4
    notes = []
    np.testing.assert_array_equal(read_images(paths, n_threads=3, notes=notes), read_images(paths, n_threads=1, notes=notes))
    assert read_images(paths, n_threads=3, notes=notes).shape == (25, 10, 12, 3)
    assert len(notes) == 3 and notes[0].startswith("1 of 25 images are not 10x12")


def test_read_images_bad_input(tmp_path):
    good = save_png(tmp_path / "good.png", 1)
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:40])  # a truncated PNG
    for paths in ([good, bad], [bad, good]):
        with pytest.raises(DataError) as info:
            read_images(paths, size=(10, 12), mode="L")
        msg = str(info.value)
        assert msg.startswith(f"cannot read image {bad}:") and msg.endswith("remove or replace it.")
        assert "skip_bad=True" in msg and "--skip-bad-images" in msg
        assert "\n" not in msg
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(DataError, match=r"cannot read image .*text\.png"):
        read_images([tmp_path / "text.png"])
    with pytest.raises(InputError, match="mode must be"):
        read_images([good], mode="CMYK")
    with pytest.raises(InputError, match="size must be"):
        read_images([good], size=(0, 4))


# ------------------------------------------------------------------------------------------- noise

@pytest.mark.parametrize("rate", [0.0, 0.1, 0.37, 1.0])
def test_symmetric_noise_exact_count(rate, seed):
    y = np.repeat(np.arange(5), 200)
    before = y.copy()
    y_noisy, mask = inject_noise(y, rate, random_state=seed)
    np.testing.assert_array_equal(y, before)  # never in place
    assert mask.sum() == round(rate * len(y)) and (mask == (y_noisy != y)).all()
    assert y_noisy.dtype == np.int64 and set(np.unique(y_noisy)) <= set(range(5))
    if rate == 1.0:
        # Uniform over the other classes: each of the 4 targets gets about a quarter of class 0.
        counts = np.bincount(y_noisy[y == 0], minlength=5)
        assert counts[0] == 0 and np.all(np.abs(counts[1:] / 200 - 0.25) < 0.1)
    again, _ = inject_noise(y, rate, random_state=seed)
    np.testing.assert_array_equal(again, y_noisy)


def test_pairs_noise_maps_to_next_class(seed):
    y = np.repeat(np.arange(4), 50)
    y_noisy, mask = inject_noise(y, 0.3, kind="pairs", random_state=seed, n_classes=6)
    assert mask.sum() == 60
    np.testing.assert_array_equal(y_noisy[mask], (y[mask] + 1) % 6)
    y_noisy, mask = inject_noise([3, 3, 3, 3], 1.0, kind="pairs")
    assert y_noisy.tolist() == [0, 0, 0, 0] and mask.all()  # wraps around: (3 + 1) % 4


def test_matrix_noise_matches_transition_rates(seed):
    T = np.array([[0.7, 0.3, 0.0], [0.0, 1.0, 0.0], [0.1, 0.1, 0.8]])
    y = np.repeat(np.arange(3), 4000)
    y_noisy, mask = inject_noise(y, None, kind=T, random_state=seed)
    assert (mask == (y_noisy != y)).all()
    observed = np.array([np.bincount(y_noisy[y == i], minlength=3) / 4000 for i in range(3)])
    assert np.abs(observed - T).max() < 0.03
    assert (y_noisy[y == 1] == 1).all() and not (y_noisy[y == 0] == 2).any()  # zeros stay zero


def test_noise_bad_input():
    y = [0, 1, 2, 1]
    for rate in (-0.1, 1.5, "0.1", None):
        with pytest.raises(InputError, match=r"rate must be a float in \[0, 1\]"):
            inject_noise(y, rate)
    with pytest.raises(InputError, match="kind must be"):
        inject_noise(y, 0.1, kind="random")
    with pytest.raises(InputError, match="rows summing to 1"):
        inject_noise(y, 0.1, kind=np.full((3, 3), 0.5))
    with pytest.raises(InputError, match="must be 3x3"):
        inject_noise(y, 0.1, kind=np.eye(2))
    with pytest.raises(InputError, match="labels must be >= 0"):
        inject_noise([0, -1, 1], 0.1)
    with pytest.raises(InputError, match="integer class labels"):
        inject_noise([0.5, 1.0], 0.1)
    with pytest.raises(InputError, match="n_classes must be an int >= 3"):
        inject_noise(y, 0.1, n_classes=2)
    with pytest.raises(InputError, match="at least 2 classes"):
        inject_noise([0, 0, 0], 0.5)
