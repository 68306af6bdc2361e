"""torchvision backbones in ConvNetClassifier (models/backbones.py): weights from a state_dict file,
fastai-style fine-tuning in two phases, the input adapter, one-line errors before training.

Real networks on real MNIST PNGs: a random-init resnet18 saved as a state_dict stands in for a
pretrained file (no downloads here). Images at 32x32 and one epoch per phase keep a fit at a few
seconds on a busy 2-core CPU.
"""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pseudolabel.callbacks import Callback
from pseudolabel.cli import main
from pseudolabel.datasets import load_image_folder
from pseudolabel.exceptions import DataError, InputError, one_line
from pseudolabel.models import ConvNetClassifier
from pseudolabel.jobs.score import load_run_model
from pseudolabel.models.backbones import BACKBONES, BackboneNet, build_backbone, check_weights
from pseudolabel.selftrain import SelfTraining
from pseudolabel.store import LabelStore

torchvision = pytest.importorskip("torchvision")

N_IMAGES = 200  # 20 per class
SIZE = 32


@pytest.fixture(scope="module")
def mnist_folder(tmp_path_factory, mnist_path):
    """200 MNIST training images as PNGs in fastai's layout (ROOT/<digit>/<n>.png), loaded."""
    root = tmp_path_factory.mktemp("mnist_png")
    with np.load(mnist_path) as d:
        X, y = d["x_train"][:4000], d["y_train"][:4000]
    take = np.concatenate([np.flatnonzero(y == c)[:N_IMAGES // 10] for c in range(10)])
    for i in take:
        (root / str(y[i])).mkdir(exist_ok=True)
        Image.fromarray(X[i]).save(root / str(y[i]) / f"{i:05d}.png")
    return load_image_folder(root)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A resnet18 state_dict (random init, seeded; ImageNet's 1000-class head) as a .pt file."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


class Snapshots(Callback):
    """The network's tensors after every epoch, with the phase the epoch belonged to."""

    def __init__(self):
        self.after = []

    def on_epoch_end(self, estimator, record):
        state = {k: v.detach().clone() for k, v in estimator.module_.net.state_dict().items()}
        self.after.append((record["phase"], state))


@pytest.fixture(scope="module")
def fine_tuned(mnist_folder, resnet18_file):
    snaps = Snapshots()
    clf = ConvNetClassifier(arch="resnet18", weights=str(resnet18_file), image_size=SIZE, epochs=1,
                            freeze_epochs=1, batch_size=50, augment=None, random_state=0, callbacks=[snaps])
    clf.fit(list(mnist_folder.X), mnist_folder.y)
    return clf, snaps


def test_backbones_are_named_and_built_with_a_new_head():
    assert {"resnet18", "resnet34", "resnet50", "efficientnet_b0", "mobilenet_v3_small"} <= set(BACKBONES)
    for name, head in (("resnet18", "fc"), ("mobilenet_v3_small", "classifier.3")):
        net = build_backbone(name, 7)
        linear = dict(net.named_modules())[head]
        assert isinstance(linear, torch.nn.Linear) and linear.out_features == 7
    assert isinstance(build_backbone("resnet18", None).fc, torch.nn.Identity)  # features only


def test_fine_tune_freezes_the_body_then_trains_everything(fine_tuned, resnet18_file, mnist_folder):
    clf, snaps = fine_tuned
    start = torch.load(resnet18_file, weights_only=True)
    assert [phase for phase, _ in snaps.after] == ["head", "all"]
    assert [r["phase"] for r in clf.history_] == ["head", "all"]
    (_, after_head), (_, after_all) = snaps.after
    body = [k for k in start if not k.startswith("fc.")]
    # phase 1: the body (weights and BatchNorm statistics) is exactly the file's; only the new head moved
    assert all(torch.equal(after_head[k], start[k]) for k in body)
    assert after_head["fc.weight"].shape == (10, 512)
    # phase 2: everything trains
    assert not torch.equal(after_all["conv1.weight"], start["conv1.weight"])
    assert not torch.equal(after_all["layer4.1.conv2.weight"], after_head["layer4.1.conv2.weight"])
    assert not torch.equal(after_all["fc.weight"], after_head["fc.weight"])
    assert all(p.requires_grad for p in clf.module_.parameters()) and not clf.module_.frozen
    proba = clf.predict_proba(list(mnist_folder.X[:30]))
    assert proba.shape == (30, 10)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    assert clf.predict(list(mnist_folder.X[:30])).shape == (30,)
    assert clf.input_shape_ == (1, SIZE, SIZE)  # grey files, read at image_size


def test_weights_file_input_is_normalized_to_imagenet(fine_tuned):
    clf, _ = fine_tuned
    net = clf.module_
    assert isinstance(net, BackboneNet) and net.imagenet_norm and net.size == (SIZE, SIZE)
    np.testing.assert_array_equal(clf.std_, [255.0])  # uint8 pixels to [0, 1], then ImageNet's mean/std
    x = torch.zeros(2, 1, 20, 24)
    assert net.adapt(x).shape == (2, 3, SIZE, SIZE)


def test_pickle_round_trip(fine_tuned, mnist_folder):
    clf, _ = fine_tuned
    paths = list(mnist_folder.X[:10])
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(back.predict_proba(paths), clf.predict_proba(paths), rtol=1e-5, atol=1e-6)


def test_weights_of_another_architecture_is_one_line_before_training(tmp_path, mnist_folder):
    torch.manual_seed(0)
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    clf = ConvNetClassifier(arch="resnet18", weights=str(path), image_size=SIZE, epochs=1)
    with pytest.raises(InputError) as exc:
        clf.check_params()  # what the jobs call before anything is written
    message = one_line(exc.value)
    assert message == str(exc.value)  # one line
    assert "resnet34 weights, not resnet18 weights" in message and str(path) in message
    with pytest.raises(InputError, match="resnet34 weights, not resnet18"):
        clf.fit(list(mnist_folder.X[:20]), mnist_folder.y[:20])
    assert not hasattr(clf, "module_")
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match=r"is not a state_dict of torchvision's resnet18 \(.*missing"):
        check_weights("resnet18", tmp_path / "other.pt")
    with pytest.raises(InputError, match="does not exist"):
        check_weights("resnet18", tmp_path / "nope.pt")


def test_a_head_of_any_size_loads_everything_else(tmp_path, resnet18_file):
    torch.manual_seed(1)
    five = torchvision.models.resnet18(weights=None, num_classes=5)
    torch.save({"state_dict": five.state_dict()}, tmp_path / "five.pt")  # inside a dict, as trainers save
    net = build_backbone("resnet18", 10, tmp_path / "five.pt")
    assert net.fc.out_features == 10
    assert torch.equal(net.layer3[0].conv1.weight, five.layer3[0].conv1.weight)
    same = build_backbone("resnet18", 5, tmp_path / "five.pt")  # a head that fits is loaded too
    assert torch.equal(same.fc.weight, five.fc.weight)


def test_arrays_and_from_scratch(mnist_small):
    X, y = mnist_small[:2]
    grey = ConvNetClassifier(arch="resnet18", epochs=0, min_steps=1, augment=None,
                             random_state=0).fit(X[:40], y[:40])  # (n, H, W) uint8, weights=None: one phase
    assert "phase" not in grey.history_[0] and not grey.module_.imagenet_norm
    assert grey.module_.size == (32, 32)  # from scratch: the images' own size (28), at least 32, not 224
    assert grey.predict_proba(X[:5]).shape == (5, 10)
    rgb = np.repeat(X[:40, :, :, None], 3, axis=3)  # (n, H, W, 3)
    clf = ConvNetClassifier(arch="mobilenet_v3_small", image_size=SIZE, epochs=0, min_steps=1, augment=None,
                            random_state=0, device="auto").fit(rgb, y[:40])
    assert clf.input_shape_ == (3, 28, 28) and clf.predict(rgb[:4]).shape == (4,)


def test_warm_started_refit_skips_the_frozen_phase(mnist_small, resnet18_file):
    X, y = mnist_small[:2]
    clf = ConvNetClassifier(arch="resnet18", weights=str(resnet18_file), image_size=SIZE, epochs=0, min_steps=1,
                            warm_start=True, augment=None, random_state=0)
    clf.fit(X[:40], y[:40])
    assert [r["phase"] for r in clf.history_] == ["head", "all"]
    clf.fit(X[40:80], y[40:80])  # the head is trained already: discriminative rates, no freezing
    assert [r["phase"] for r in clf.history_] == ["all"]
    assert [r["phase"] for r in clf.set_params(freeze_epochs=0, warm_start=False).fit(X[:40], y[:40]).history_] \
        == ["all"]


def test_self_training_with_a_fine_tuned_backbone(mnist_folder, resnet18_file):
    paths, y = np.asarray(mnist_folder.X), np.asarray(mnist_folder.y)
    partial = np.full(len(y), -1)
    keep = np.concatenate([np.flatnonzero(y == c)[:5] for c in range(10)])
    partial[keep] = y[keep]
    model = ConvNetClassifier(arch="resnet18", weights=str(resnet18_file), image_size=SIZE, epochs=1,
                              batch_size=50, augment=None, random_state=0)
    st = SelfTraining(model, threshold=0.0, criterion="k_best", k_best=50, max_iter=1).fit(list(paths), partial)
    assert [h["round"] for h in st.history_] == [0, 1] and st.history_[1]["n_added"] == 50
    assert (st.labeled_iter_ == 1).sum() == 50
    assert st.predict(list(paths[:7])).shape == (7,)


@pytest.mark.parametrize("params, message", [
    (dict(arch="fast", weights="imagenet"), "The 'weights' parameter of ConvNetClassifier must be None unless arch "
                                            "is a torchvision backbone (resnet18, resnet34, resnet50, ...). "
                                            "Got 'imagenet' instead."),
    (dict(arch="resnet18", image_size=4), "The 'image_size' parameter of ConvNetClassifier must be None, an int "
                                          ">= 8 or a (height, width) pair of ints >= 8 for a backbone. Got 4 instead."),
    (dict(arch="resnet18", freeze_epochs=-1), "The 'freeze_epochs' parameter of ConvNetClassifier must be an int "
                                              ">= 0. Got -1 instead."),
    (dict(arch="resnet18", weights=3), "weights must be 'imagenet', the path of a state_dict file or None; got 3."),
])
def test_bad_backbone_params_are_named(params, message):
    with pytest.raises(InputError) as exc:
        ConvNetClassifier(**params).check_params()
    assert one_line(exc.value) == message


def test_imagenet_download_failure_names_the_path_alternative(tmp_path, monkeypatch):
    """No internet (a proxy that refuses connections): one line that says to pass weights=PATH."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    with pytest.raises(DataError) as exc:
        build_backbone("resnet18", 10, "imagenet")
    message = one_line(exc.value)
    assert message == str(exc.value)
    assert re.search(r"cannot get the ImageNet weights of resnet18 \(https://\S+resnet18-\S+\.pth", message)
    assert "pass weights=PATH" in message


def test_command_line_fine_tunes_a_backbone_from_a_weights_file(mnist_folder, resnet18_file, tmp_path):
    """`selftrain --model resnet18 --weights FILE --freeze-epochs --input-size` on a PNG folder:
    the flags reach the network (two phases at 32 px), labels and predictions reach the store."""
    root = Path(mnist_folder.X[0]).parents[1]
    out = tmp_path / "st"
    result = CliRunner().invoke(main, [str(a) for a in (
        "selftrain", "--data", root, "--labeled", 50, "--model", "resnet18", "--weights", resnet18_file,
        "--freeze-epochs", 1, "--input-size", 32, "--epochs", 1, "--threshold", 0.0, "--max-iter", 1,
        "--out", out)])
    assert result.exit_code == 0, result.output + result.stderr
    saved = json.loads((out / "config.json").read_text())
    assert saved["weights"] == str(resnet18_file.resolve()) and saved["input_size"] == 32
    assert saved["freeze_epochs"] == 1 and saved["image_size"] is None  # the decode size is not the input size
    with LabelStore(out / "labels.db") as store:
        sources = store.events()["source"].value_counts().to_dict()
    assert sources.get("given") == 50 and sources.get("pseudo", 0) + sources.get("predicted", 0) >= 150, sources
    model, _ = load_run_model(out)
    assert model.arch == "resnet18" and model.module_.size == (32, 32)
    # Round 1 warm-starts from round 0's fine-tuned network: the second phase alone (docs/backbones.md).
    assert [h["phase"] for h in model.history_] == ["all"] and model.freeze_epochs == 1


@pytest.mark.parametrize("flags, needles", [
    (["--model", "cnn", "--weights", "none"], ("--weights applies to a torchvision backbone", "--model cnn")),
    (["--model", "embed:resnet18", "--freeze-epochs", "2"], ("--freeze-epochs applies to a torchvision backbone",)),
    (["--model", "resnet18", "--weights", "WRONG"], ("resnet34 weights, not resnet18 weights",)),
    (["--model", "resnet18", "--input-size", "4"], ("--input-size must be at least 8 pixels; got 4",)),
])
def test_command_line_backbone_flags_refuse_bad_input_in_one_line(flags, needles, mnist_folder, tmp_path):
    root = Path(mnist_folder.X[0]).parents[1]
    wrong = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), wrong)
    out = tmp_path / "run"
    args = ["selftrain", "--data", str(root), "--out", str(out)] + [str(wrong) if f == "WRONG" else f for f in flags]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists()  # nothing written


def test_command_line_cleans_a_folder_with_embeddings_of_a_weights_file(mnist_folder, resnet18_file, tmp_path):
    """`clean --model embed:resnet18 --weights FILE --input-size 32`: features once, a logistic
    regression per fold; every image gets an out-of-fold prediction in the store."""
    root = Path(mnist_folder.X[0]).parents[1]
    out = tmp_path / "clean"
    result = CliRunner().invoke(main, [str(a) for a in (
        "clean", "--data", root, "--model", "embed:resnet18", "--weights", resnet18_file, "--input-size", 32,
        "--folds", 3, "--passes", 1, "--out", out)])
    assert result.exit_code == 0, result.output + result.stderr
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_name"] == "embed:resnet18" and saved["input_size"] == 32
    issues = pd.read_csv(out / "issues.csv")
    assert len(issues) == N_IMAGES and issues["p_max"].between(0, 1).all()  # an out-of-fold row per image
    with LabelStore(out / "labels.db") as store:
        sources = store.events()["source"].value_counts().to_dict()
    assert sources["given"] == N_IMAGES and sources.get("corrected", 0) > 0, sources  # random features: many fixes
