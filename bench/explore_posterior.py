"""Compare ranking methods, and second-pass variants, on a noise draw the benchmark does not use.

    python bench/explore_posterior.py --seed 1 --noise 0.1,0.4 [--second-pass relabel,keep]

For each noise rate: symmetric noise with --seed (the benchmark uses seed 0), out-of-fold
probabilities from the clean job's recipe (saved in --out and reused), then for every method of
`rank_label_issues` the share of labels correct after relabeling and the detection F1, scored
against the true training labels. --second-pass trains the folds again on the labels the
posterior method fixed: "relabel" on all of them, "keep" only on those it did not flag, "prune"
on the relabeled ones whose posterior reaches 0.9 (the unsure left out), and scores the second
pass alone and averaged with the first. The test set is never read; this is
how the posterior method and `passes auto` were chosen (docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pseudolabel.crossval import _make_splits, out_of_fold_proba  # noqa: E402
from pseudolabel.datasets import inject_noise, load_mnist  # noqa: E402
from pseudolabel.issues import METHODS, fix_labels  # noqa: E402
from pseudolabel.jobs.clean import DEFAULTS, build_estimator, detection_scores  # noqa: E402


def scores(name: str, y, y_noisy, proba) -> None:
    noisy = y_noisy != y
    print(f"  {name}: out-of-fold accuracy against the true labels {np.mean(proba.argmax(1) == y):.4f}")
    for method in METHODS:
        new = fix_labels(y_noisy, proba, method=method)
        f1 = detection_scores(new != y_noisy, noisy)["f1"]
        print(f"    {method:18s} labels correct after relabel {np.mean(new == y):.4f}  F1 {f1:.4f}")


def second_pass(X, y_noisy, proba, config, variant: str, n_jobs: int) -> np.ndarray:
    """Out-of-fold probabilities of folds trained on the posterior's fixed labels (-1 rows left out)."""
    policy = {"keep": "drop", "relabel": "relabel", "prune": "prune"}[variant]
    fixed = fix_labels(y_noisy, proba, method="posterior", policy=policy, threshold=0.9 if variant == "prune" else 0.0)
    classes, counts = np.unique(y_noisy, return_counts=True)
    splits = _make_splits(None, y_noisy, classes, counts, config["folds"], config["seed"])

    def fold(train, test):
        train = train[fixed[train] >= 0]
        return test, build_estimator(config).fit(X[train], fixed[train]).predict_proba(X[test])

    out = np.zeros_like(proba)
    for test, p in Parallel(n_jobs=n_jobs)(delayed(fold)(tr, te) for tr, te in splits):
        out[test] = p
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noise", default="0.1,0.4")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--second-pass", default="", help="Comma-separated variants: relabel, keep, prune.")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--data", default=None, help="path to mnist.npz (default: load_mnist's search)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "explore_posterior"))
    args = ap.parse_args()
    X, y = (ds := load_mnist(args.data)).X, ds.y
    config = dict(DEFAULTS, seed=args.seed)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for rate in (float(r) for r in args.noise.split(",")):
        y_noisy, _ = inject_noise(y, rate, random_state=args.seed, n_classes=10)
        saved = Path(args.out) / f"proba_s{args.seed}_n{rate:g}.npz"
        if saved.is_file():
            proba = np.load(saved)["proba"]
        else:
            t0 = time.perf_counter()
            proba = out_of_fold_proba(build_estimator(config), X, y_noisy, cv=config["folds"],
                                      random_state=args.seed, n_jobs=args.n_jobs)
            print(f"noise {rate:g}: out-of-fold pass {time.perf_counter() - t0:.0f} s")
            np.savez_compressed(saved, proba=proba)
        print(f"noise {rate:g}, seed {args.seed}")
        scores("pass 1", y, y_noisy, proba)
        for variant in filter(None, args.second_pass.split(",")):
            p2 = second_pass(X, y_noisy, proba, config, variant, args.n_jobs)
            scores(f"pass 2 ({variant})", y, y_noisy, p2)
            scores(f"pass 2 ({variant}) averaged with pass 1", y, y_noisy, (proba + p2) / 2)


if __name__ == "__main__":
    main()
