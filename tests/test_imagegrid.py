"""save_image_grid and suspect_grid write real PNGs of the expected size that show something."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pseudolabel import rank_label_issues
from pseudolabel.exceptions import DataError, InputError
from pseudolabel.imagegrid import _suspect_titles, save_image_grid, suspect_grid


def read_png(path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("L"), dtype=np.float64)


def assert_not_blank(pixels: np.ndarray) -> None:
    # White background with dark ink ("Greys" draws bright pixels dark).
    assert pixels.std() > 10
    assert (pixels < 60).mean() > 0.01


def test_array_grid_has_the_requested_size_and_content(digits, tmp_path):
    images, labels = digits
    out = save_image_grid(images[:7], [f"digit {y}" for y in labels[:7]], tmp_path / "a" / "g.png",
                          ncols=5, figsize=(10, 4.4))
    assert out == tmp_path / "a" / "g.png" and out.is_file()
    pixels = read_png(out)
    assert pixels.shape == (440, 1000)  # figsize * dpi 100, rows x columns
    assert_not_blank(pixels)


def test_default_size_follows_the_grid_shape(digits, tmp_path):
    images, _ = digits
    one_row = read_png(save_image_grid(images[:3], None, tmp_path / "one.png", ncols=5))
    two_rows = read_png(save_image_grid(images[:8], None, tmp_path / "two.png", ncols=4))
    assert one_row.shape == (220, 600)  # 3 columns (ncols capped at n), 1 row
    assert two_rows.shape == (440, 800)
    # Blank images give a blank grid: the content check can fail.
    blank = read_png(save_image_grid(np.zeros((3, 8, 8)), None, tmp_path / "blank.png"))
    assert blank.std() < 1


def test_images_from_files_rgb_and_channels_first(tmp_path, digits):
    images, _ = digits
    paths = []
    for i, img in enumerate(images[:3]):
        p = tmp_path / f"{i}.png"
        Image.fromarray((img * 255 / 16).astype(np.uint8), mode="L").save(p)
        paths.append(p)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.full((8, 8, 3), (200, 20, 20), dtype=np.uint8)).save(rgb)
    palette = tmp_path / "p.png"
    Image.fromarray((images[3] * 15).astype(np.uint8)).convert("P").save(palette)
    channels_first = images[4][None]
    float_rgb = np.random.default_rng(0).normal(size=(8, 8, 3))  # outside [0, 1]: rescaled
    mixed = [*paths, str(rgb), palette, channels_first, float_rgb]
    out = save_image_grid(mixed, [str(i) for i in range(len(mixed))], tmp_path / "mixed.png",
                          ncols=4)
    with Image.open(out) as img:
        assert img.size == (800, 440)
        rgb_pixels = np.asarray(img.convert("RGB")).reshape(-1, 3).astype(int)
    # The red file shows up red.
    assert np.any((rgb_pixels[:, 0] > 150) & (rgb_pixels[:, 1] < 60) & (rgb_pixels[:, 2] < 60))


def test_suspect_grid_titles_and_png(digits, tmp_path):
    images, labels = digits
    proba = np.full((len(labels), 10), 0.01)
    proba[np.arange(len(labels)), labels] = 0.91
    noisy = labels.copy()
    noisy[:4] = (labels[:4] + 1) % 10
    issues = rank_label_issues(noisy, proba, method="disagreement")
    titles = _suspect_titles(issues.head(4), None)
    assert titles == [f"Label {noisy[i]} | Pred {labels[i]} (0.91)" for i in range(4)]
    names = [f"n{i}" for i in range(10)]
    first = _suspect_titles(issues.head(1), names)[0]
    assert first == f"Label n{noisy[0]} | Pred n{labels[0]} (0.91)"
    out = suspect_grid(images, issues, tmp_path / "suspects.png", n=12, class_names=names)
    pixels = read_png(out)
    assert pixels.shape == (660, 1000)  # 12 images: 3 rows of 5
    assert_not_blank(pixels)


def test_empty_and_bad_input(tmp_path, digits):
    images, labels = digits
    with pytest.raises(InputError, match=r"^images is empty"):
        save_image_grid([], [], tmp_path / "x.png")
    with pytest.raises(InputError, match=r"images and titles must be the same length"):
        save_image_grid(images[:3], ["a"], tmp_path / "x.png")
    with pytest.raises(InputError, match=r"image 1 has shape \(2, 3, 4, 5\)"):
        save_image_grid([images[0], np.zeros((2, 3, 4, 5))], None, tmp_path / "x.png")
    with pytest.raises(InputError, match=r"'ncols' parameter of save_image_grid must be an int"):
        save_image_grid(images[:3], None, tmp_path / "x.png", ncols=0)
    with pytest.raises(DataError, match=r"does not exist; check the path"):
        save_image_grid([tmp_path / "missing.png"], None, tmp_path / "x.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"cannot read image .*junk\.png"):
        save_image_grid([tmp_path / "junk.png"], None, tmp_path / "x.png")
    proba = np.eye(10)[labels] * 0.9 + 0.01
    issues = rank_label_issues(labels, proba)
    with pytest.raises(InputError, match=r"^issues is empty"):
        suspect_grid(images, issues.iloc[:0], tmp_path / "x.png")
    with pytest.raises(InputError, match=r"issues refers to item \d+, but images holds 5"):
        suspect_grid(images[:5], issues, tmp_path / "x.png")
    with pytest.raises(InputError, match=r"issues lacks the column\(s\) p_max"):
        suspect_grid(images, issues.drop(columns="p_max"), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
