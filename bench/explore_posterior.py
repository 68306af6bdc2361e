"""Compare ranking methods, and second-pass variants, on a noise draw the benchmark does not use.

    python bench/explore_posterior.py --seed 1 --noise 0.1,0.4 [--second-pass relabel,keep]

For each noise rate: symmetric noise with --seed (the benchmark uses seed 0), out-of-fold
probabilities from the clean job's recipe (saved in --out and reused), then for every method of
`rank_label_issues` the share of labels correct after relabeling and the detection F1, scored
against the true training labels. --second-pass trains the folds again on the labels the
posterior method fixed: "relabel" on all of them, "keep" only on those it did not flag, "prune"
on the relabeled ones whose posterior reaches 0.9 (the unsure left out), "weighted" on all
relabeled ones, each weighted by its posterior, and scores the second
pass alone and averaged with the first; --passes 3 adds a pass that trains on the second's
fixes, --pass2-epochs / --pass2-augment set the later passes' recipe. The test set is never read; this is
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
from pseudolabel.issues import METHODS, fix_labels, rank_label_issues  # noqa: E402
from pseudolabel.jobs.clean import DEFAULTS, build_estimator, detection_scores  # noqa: E402


def scores(name: str, y, y_noisy, proba) -> None:
    noisy = y_noisy != y
    print(f"  {name}: out-of-fold accuracy against the true labels {np.mean(proba.argmax(1) == y):.4f}")
    for method in METHODS:
        new = fix_labels(y_noisy, proba, method=method)
        f1 = detection_scores(new != y_noisy, noisy)["f1"]
        print(f"    {method:18s} labels correct after relabel {np.mean(new == y):.4f}  F1 {f1:.4f}")
    issues = rank_label_issues(y_noisy, proba, method="posterior").sort_values("item")
    wrong = fix_labels(y_noisy, proba, method="posterior", issues=issues) != y
    unsure = issues["p_max"].to_numpy() < 0.9
    print(f"    posterior: {int(wrong.sum())} labels wrong after relabel, {int((wrong & unsure).sum())} of them "
          f"among the {int(unsure.sum())} whose best posterior is below 0.9")


def second_pass(X, y_noisy, proba, config, variant: str, n_jobs: int) -> np.ndarray:
    """Out-of-fold probabilities of folds trained on the posterior's fixed labels (-1 rows left out);
    "weighted" trains on the relabeled labels, each weighted by its posterior."""
    policy = {"keep": "drop", "relabel": "relabel", "prune": "prune", "weighted": "relabel"}[variant]
    issues = rank_label_issues(y_noisy, proba, method="posterior").sort_values("item")
    fixed = fix_labels(y_noisy, proba, method="posterior", policy=policy, issues=issues,
                       threshold=0.9 if variant == "prune" else 0.0)
    weight = issues["p_max"].to_numpy() if variant == "weighted" else np.ones(len(fixed))
    classes, counts = np.unique(y_noisy, return_counts=True)
    splits = _make_splits(None, y_noisy, classes, counts, config["folds"], config["seed"])

    def fold(train, test):
        train = train[fixed[train] >= 0]
        clf = build_estimator(config).fit(X[train], fixed[train], sample_weight=weight[train])
        return test, clf.predict_proba(X[test])

    out = np.zeros_like(proba)
    for test, p in Parallel(n_jobs=n_jobs)(delayed(fold)(tr, te) for tr, te in splits):
        out[test] = p
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noise", default="0.1,0.4")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--second-pass", default="", help="Comma-separated variants: relabel, keep, prune, weighted.")
    ap.add_argument("--pass2-epochs", type=int, default=None, help="Epochs of the second pass's folds "
                    "(default: the clean job's epochs).")
    ap.add_argument("--pass2-augment", default=None, help="'affine' to augment the second pass's folds.")
    ap.add_argument("--passes", type=int, default=2, help="Passes in all (3: a third trains on the second's fixes).")
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
            config2 = dict(config, epochs=args.pass2_epochs or config["epochs"],
                           augment=args.pass2_augment or config["augment"])
            before = proba
            for pass_no in range(2, args.passes + 1):
                # each pass trains on the labels the pass before fixed (saved and reused, like pass 1)
                saved = Path(args.out) / (f"proba{pass_no}_s{args.seed}_n{rate:g}_{variant}_e{config2['epochs']}"
                                          f"_{config2['augment']}.npz")
                if saved.is_file():
                    now = np.load(saved)["proba"]
                else:
                    t0 = time.perf_counter()
                    now = second_pass(X, y_noisy, before, config2, variant, args.n_jobs)
                    print(f"  pass {pass_no} ({variant}, epochs {config2['epochs']}, augment {config2['augment']}): "
                          f"{time.perf_counter() - t0:.0f} s")
                    np.savez_compressed(saved, proba=now)
                scores(f"pass {pass_no} ({variant})", y, y_noisy, now)
                scores(f"pass {pass_no} ({variant}) averaged with pass {pass_no - 1}", y, y_noisy, (before + now) / 2)
                before = now

if __name__ == "__main__":
    main()
