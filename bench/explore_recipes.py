"""Try self-training recipes on MNIST against a development split carved from the training set.

    python bench/explore_recipes.py --name NAME --labeled 1000 --seed 0 --config '{"arch": "strided"}'

The pool is x_train[:50000] (labels hidden except ``--labeled`` of them); the last 10,000 training
images are the development set every round is scored on. The test set is never read, so recipes
chosen with this script are not tuned on test labels. Prints one JSON line per run (dev accuracy
per round, seconds per round); ``--out DIR`` also writes it to DIR/NAME.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pseudolabel.datasets import load_mnist  # noqa: E402
from pseudolabel.jobs.selftrain import hide_labels  # noqa: E402
from pseudolabel.models import ConvNetClassifier  # noqa: E402
from pseudolabel.selftrain import SelfTraining  # noqa: E402

CLF_KEYS = ("arch", "epochs", "min_steps", "batch_size", "lr", "augment", "warm_start", "optimizer",
            "weight_decay", "channels_last", "ema", "device")
ST_KEYS = ("threshold", "max_iter", "relabel", "class_quota", "given_share")
BASE = dict(arch="strided", epochs=1, min_steps=600, batch_size=128, lr=3e-3, augment="affine",
            warm_start=True, threshold=0.99, max_iter=5, relabel=True, given_share=0.5)


def run(name: str, labeled: int, seed: int, config: dict, data: str | None) -> dict:
    cfg = {**BASE, **config}
    ds = load_mnist(data)
    x, y = ds.X, ds.y
    pool_x, pool_y, dev_x, dev_y = x[:50000], y[:50000], x[50000:], y[50000:]
    clf = ConvNetClassifier(random_state=seed, **{k: cfg[k] for k in CLF_KEYS if k in cfg})
    t0 = time.perf_counter()
    if labeled >= len(pool_y):
        clf.fit(pool_x, pool_y)
        hist = [{"round": 0, "dev": float(clf.score(dev_x, dev_y)), "seconds": time.perf_counter() - t0}]
    else:
        y_part = hide_labels(pool_y, labeled, seed)
        st = SelfTraining(clf, verbose=1, **{k: cfg[k] for k in ST_KEYS if k in cfg})
        st.fit(pool_x, y_part, eval_set=(dev_x, dev_y), y_true=pool_y)
        hist = [{"round": h["round"], "dev": h["test_accuracy"], "seconds": h["seconds"],
                 "n_labeled": h["n_labeled"], "added_acc": h.get("added_accuracy")} for h in st.history_]
    out = {"name": name, "labeled": labeled, "seed": seed, "config": cfg, "rounds": hist,
           "total_s": time.perf_counter() - t0, "final_dev": hist[-1]["dev"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--labeled", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default="{}")
    ap.add_argument("--data", default=None, help="path to mnist.npz (default: load_mnist's search)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    res = run(a.name, a.labeled, a.seed, json.loads(a.config), a.data)
    line = json.dumps(res)
    print(line, flush=True)
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / f"{a.name}.json").write_text(line + "\n")


if __name__ == "__main__":
    main()
