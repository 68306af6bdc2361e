"""Try self-training recipes on MNIST against a development split carved from the training set.

    python bench/explore_recipes.py --name NAME --labeled 1000 --seed 0 --config '{"epochs": 3}'

The pool is x_train[:50000] (labels hidden except ``--labeled`` of them); the last 10,000 training
images are the development set every round is scored on. The test set is never read, so recipes
chosen with this script are not tuned on test labels. Prints one JSON line per run (dev accuracy
per round, seconds per round); ``--out DIR`` also writes it to DIR/NAME.json. The config overrides
keys of the default recipe (jobs.selftrain.DEFAULTS; in the first exploration that recipe was
arch strided, one epoch a round, 5 rounds); with ``--labeled`` 50000 or more it is a supervised fit
of the (final) network on the whole pool.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pseudolabel.datasets import load_mnist  # noqa: E402
from pseudolabel.jobs.selftrain import DEFAULTS, build_selftraining, hide_labels  # noqa: E402


def run(name: str, labeled: int, seed: int, config: dict, data: str | None) -> dict:
    cfg = {**DEFAULTS, **config}
    ds = load_mnist(data)
    x, y = ds.X, ds.y
    pool_x, pool_y, dev_x, dev_y = x[:50000], y[:50000], x[50000:], y[50000:]
    st = build_selftraining({**cfg, "seed": seed})
    st.verbose = 1
    t0 = time.perf_counter()
    if labeled >= len(pool_y):  # supervised: the (final) network on the whole pool
        clf = st.estimator.set_params(epochs=cfg.get("final_epochs") or cfg["epochs"],
                                      arch=cfg.get("final_arch") or cfg["arch"], warm_start=False)
        clf.fit(pool_x, pool_y)
        hist = [{"round": 0, "dev": float(clf.score(dev_x, dev_y)), "seconds": time.perf_counter() - t0}]
    else:
        st.fit(pool_x, hide_labels(pool_y, labeled, seed), eval_set=(dev_x, dev_y), y_true=pool_y)
        hist = [{"round": h["round"], "dev": h["test_accuracy"], "seconds": h["seconds"],
                 "n_labeled": h["n_labeled"], "added_acc": h.get("added_accuracy"), "final": h.get("final", False)}
                for h in st.history_]
    return {"name": name, "labeled": labeled, "seed": seed, "config": cfg, "rounds": hist,
            "total_s": time.perf_counter() - t0, "final_dev": hist[-1]["dev"]}


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
