"""save_image_grid and suspect_grid write real PNGs of the expected size that show something."""
from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression

from pseudolabel import inject_noise, out_of_fold_proba, rank_label_issues
from pseudolabel.exceptions import DataError, InputError
from pseudolabel.imagegrid import _suspect_titles, grid_rows, save_image_grid, suspect_grid


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
    assert pixels.shape == (220, 800)  # only the 4 disagreements, not 12: 1 row of 4
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
    with pytest.raises(InputError, match=r"'n' parameter of grid_rows must be an int >= 1"):
        grid_rows(issues, 0)
    assert not (tmp_path / "x.png").exists()


TITLE = re.compile(r"^Label (\w+) \| Pred (\w+) \((\d\.\d\d)\)$")


def _ranked(images, labels, n_samples, rate, seed):
    """Real out-of-fold suspects: a logistic regression on digits with a few labels flipped."""
    X = images[:n_samples].reshape(n_samples, -1) / 16.0
    noisy, flipped = inject_noise(labels[:n_samples], rate, random_state=seed)
    proba = out_of_fold_proba(LogisticRegression(max_iter=500), X, noisy, cv=3, random_state=seed, n_jobs=1)
    return rank_label_issues(noisy, proba), noisy, flipped, proba


@pytest.fixture(scope="module")
def ranked_digits(digits):
    images, labels = digits
    return _ranked(images, labels, len(labels), 0.02, 0)


def _check_rows(rows, issues, names=None):
    """Every row a disagreement, in the ranking's order, titled "Label x | Pred y (p)"."""
    assert (rows["predicted"] != rows["given"]).all()
    disagreements = issues[issues["predicted"] != issues["given"]]
    assert rows["item"].tolist() == disagreements["item"].head(len(rows)).tolist()
    flagged = rows["is_issue"].to_numpy()
    assert not np.any(np.diff(flagged.astype(int)) > 0)  # flagged rows first
    for group in (rows[flagged], rows[~flagged]):
        assert np.all(np.diff(group["score"].to_numpy()) <= 0)  # most suspicious first
    for row in rows.itertuples():
        m = TITLE.match(row.title)
        assert m, row.title
        name = (lambda v: str(v)) if names is None else (lambda v: names[v])
        assert m.groups() == (name(row.given), name(row.predicted), f"{row.p_max:.2f}")


def test_grid_of_real_suspects_shows_25_disagreements_most_likely_wrong_first(ranked_digits, digits, tmp_path):
    images, _ = digits
    issues, noisy, flipped, proba = ranked_digits
    n_disagree = int((issues["predicted"] != issues["given"]).sum())
    assert n_disagree >= 25 and (issues["predicted"] == issues["given"]).sum() > 1000
    names = [f"d{k}" for k in range(10)]
    rows = grid_rows(issues, 25, class_names=names)
    assert len(rows) == 25
    _check_rows(rows, issues, names)
    # The flipped labels the model caught come first: a real detector, not the agreements.
    assert flipped[rows["item"].to_numpy()].mean() > 0.6
    # The default ranking (posterior) is the one the titles show; its prediction mostly is the model's.
    assert (rows["predicted"].to_numpy() == proba[rows["item"].to_numpy()].argmax(1)).mean() > 0.9
    out = suspect_grid(images, issues, tmp_path / "grid.png", n=25, class_names=names)
    pixels = read_png(out)
    assert pixels.shape == (1100, 1000)  # 25 tiles: 5 rows of 5
    assert_not_blank(pixels)
    # A hand-shuffled table gives the same grid: the order comes from the flags and scores.
    shuffled = issues.sample(frac=1.0, random_state=1)
    assert grid_rows(shuffled, 25)["item"].tolist() == rows["item"].tolist()


def test_few_disagreements_make_a_smaller_grid(digits, tmp_path):
    images, labels = digits
    issues, noisy, flipped, _ = _ranked(images, labels, 300, 0.01, 0)
    n_disagree = int((issues["predicted"] != issues["given"]).sum())
    assert 1 <= n_disagree < 25, n_disagree
    rows = grid_rows(issues, 25)
    assert len(rows) == n_disagree
    _check_rows(rows, issues)
    out = suspect_grid(images[:300], issues, tmp_path / "few.png", n=25)
    ncols = min(5, n_disagree)
    nrows = -(-n_disagree // 5)
    assert read_png(out).shape == (220 * nrows, 200 * ncols)


def test_no_disagreement_draws_a_note_not_a_crash(digits, tmp_path):
    images, labels = digits
    X = images[:200].reshape(200, -1) / 16.0
    # A weakly regularized model fits its own training set: it agrees with every label.
    proba = LogisticRegression(C=10.0, max_iter=500).fit(X, labels[:200]).predict_proba(X)
    issues = rank_label_issues(labels[:200], proba, method="disagreement")
    assert (issues["predicted"] == issues["given"]).all()
    assert grid_rows(issues, 25).empty
    out = suspect_grid(images[:200], issues, tmp_path / "none" / "grid.png", n=25)
    assert out.is_file()
    pixels = read_png(out)
    assert pixels.shape == (100, 500)  # a small note, no tiles
    assert (pixels < 128).mean() > 0.001  # the note's text is there
