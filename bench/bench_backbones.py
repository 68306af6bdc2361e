"""torchvision backbones on a CPU: today's CNN, embedding mode and fine-tuning, on 1000 MNIST images.

    .venv/bin/python bench/bench_backbones.py [--seed 0] [--train 1000] [--test 1000] [--size 32] [--threads N]

About 3 minutes on 2 cores (docs/benchmarks.md, "Backbones on a CPU"); on a crowded machine pass
--threads 1 (two OpenMP threads per process spin against other processes).

Trains on the first ``--train`` MNIST training images, scores on the first ``--test`` test images:

- cnn: ConvNetClassifier(arch="auto") with the default recipe's settings (2 epochs, at least 600
  steps, affine augmentation, EMA), trained from scratch;
- embed:resnet18: EmbeddingClassifier (features once, cached; a logistic regression on top),
  timed twice: the first fit computes the features (cache misses), the second finds them all
  cached (what every later self-training round and cross-validation fold pays);
- resnet18 fine-tune: ConvNetClassifier(arch="resnet18", weights=FILE), 1 epoch with the body
  frozen, then 3 with everything trained.

The machine this ran on has no internet, so the "pretrained" weights are a **random-init** resnet18
saved to a state_dict file (torch.manual_seed(seed)): the numbers measure speed and the machinery,
not what ImageNet features give (on a user's machine pass --imagenet to use weights="imagenet").
Images are resized to --size pixels (default 32) for CPU speed. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_selftrain import machine as cpu_and_torch  # noqa: E402
from pseudolabel.models import ConvNetClassifier  # noqa: E402
from pseudolabel.models.embed import EmbeddingClassifier, clear_memory_cache  # noqa: E402


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu_and_torch()}, load average {load:.1f} at start"


def mnist(n_train: int, n_test: int):
    path = Path(os.environ.get("PSEUDOLABEL_DATA", ROOT.parent / "shared" / "data")) / "mnist.npz"
    with np.load(path) as d:
        return d["x_train"][:n_train], d["y_train"][:n_train], d["x_test"][:n_test], d["y_test"][:n_test]


def timed(fn, what: str):
    t = time.perf_counter()
    out = fn()
    secs = time.perf_counter() - t
    print(f"{what}: {secs:.1f} s", file=sys.stderr, flush=True)
    return out, secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--size", type=int, default=32, help="backbone input size (pixels)")
    ap.add_argument("--imagenet", action="store_true", help="weights='imagenet' (needs internet or torch's cache)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    X, y, Xt, yt = mnist(args.train, args.test)
    tmp = Path(tempfile.mkdtemp(prefix="bench_backbones-"))
    if args.imagenet:
        weights, what = "imagenet", "ImageNet weights"
    else:
        import torchvision

        torch.manual_seed(args.seed)
        weights = str(tmp / "resnet18-random.pt")
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
        what = "random-init resnet18 weights saved to a file (no download here)"
    rows = []

    cnn = ConvNetClassifier(arch="auto", epochs=2, min_steps=600, batch_size=128, lr=3e-3, augment="affine",
                            ema=0.999, random_state=args.seed)
    _, secs = timed(lambda: cnn.fit(X, y), "cnn")
    rows.append(("cnn (arch auto, default recipe's 2 epochs / 600 steps)", secs, cnn.score(Xt, yt), ""))

    clear_memory_cache()
    embed = dict(backbone="resnet18", weights=weights, image_size=args.size, cache_dir=tmp / "cache")
    clf = EmbeddingClassifier(**embed)
    _, first = timed(lambda: clf.fit(X, y), "embed, first fit")
    misses = clf.cache_misses_
    acc = clf.score(Xt, yt)
    clear_memory_cache()  # the later fit reads the disk cache, as another process (a fold worker) would
    again = EmbeddingClassifier(**embed)
    _, second = timed(lambda: again.fit(X, y), "embed, later fit")
    hits = again.cache_hits_
    rows.append((f"embed:resnet18 ({args.size}px), first fit: {misses} features computed", first, acc,
                 "features cached on disk"))
    rows.append((f"embed:resnet18 ({args.size}px), a later fit: {hits} features from the disk cache", second,
                 again.score(Xt, yt), "what each later round / fold pays"))

    ft = ConvNetClassifier(arch="resnet18", weights=weights, image_size=args.size, freeze_epochs=1, epochs=3,
                           batch_size=64, augment="affine", random_state=args.seed)
    _, secs = timed(lambda: ft.fit(X, y), "fine-tune")
    head = sum(r["seconds"] for r in ft.history_ if r.get("phase") == "head")
    rows.append((f"resnet18 fine-tune ({args.size}px): 1 frozen + 3 unfrozen epochs", secs, ft.score(Xt, yt),
                 f"frozen phase {head:.1f} s"))

    print(f"\n`{' '.join([Path(sys.executable).name, 'bench/bench_backbones.py', *sys.argv[1:]])}` "
          f"(seed {args.seed}; {args.train} MNIST training images, {args.test} test images; weights: {what})\n")
    print(f"Machine: {machine()}\n")
    print("| model | seconds per fit | test accuracy | note |")
    print("| --- | ---: | ---: | --- |")
    for name, secs, acc, note in rows:
        print(f"| {name} | {secs:.1f} | {acc:.4f} | {note} |")
    shutil.rmtree(tmp, ignore_errors=True)  # the weights file and the embedding cache


if __name__ == "__main__":
    main()
