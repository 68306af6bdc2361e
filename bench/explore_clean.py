"""Compare cleaning-model recipes on one fold: train on 48,000 MNIST training images with injected
noise, score the other 12,000 against their true labels (the accuracy an out-of-fold pass reaches).

    python bench/explore_clean.py --name NAME --noise 0.1 --config '{"arch": "fast", "epochs": 2}'

The test set is never read. Prints one JSON line (accuracy against the true labels, seconds).
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
from pseudolabel.datasets import inject_noise  # noqa: E402
from pseudolabel.models import ConvNetClassifier  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default="{}")
    ap.add_argument("--data", default=None)
    a = ap.parse_args()
    cfg = {"arch": "fast", "epochs": 2, "min_steps": 200, **json.loads(a.config)}
    ds = load_mnist(a.data)
    noisy, _ = inject_noise(ds.y, a.noise, random_state=a.seed)
    t = time.perf_counter()
    clf = ConvNetClassifier(random_state=a.seed, **cfg).fit(ds.X[:48000], noisy[:48000])
    acc = float(clf.score(ds.X[48000:], ds.y[48000:]))
    print(json.dumps({"name": a.name, "noise": a.noise, "config": cfg, "accuracy_true": acc,
                      "seconds": time.perf_counter() - t}), flush=True)


if __name__ == "__main__":
    main()
