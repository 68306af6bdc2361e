"""A table's default model by its number of labels: logreg against hgb, supervised, on scikit-learn's
bundled wine, breast_cancer and digits (as a table of 64 pixel columns).

    .venv/bin/python bench/bench_table_models.py [--seeds 0,1,2,3,4]

Each seed draws a stratified 30 % test split; from the rest, N labeled rows (stratified). Both
models are the registry's (`--model logreg`, `--model hgb`). Prints test accuracy in %, the mean
over the seeds. About 20 s on the 2-core machine. docs/tables.md holds the table and the rule it
gave (models/registry.py: TABLE_FEW_LABELS).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from pseudolabel.models.registry import make_model  # noqa: E402

SIZES = (20, 50, 100, 200, 400, 800, 1200)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    seeds = [int(s) for s in ap.parse_args().seeds.split(",")]
    print("| table | labels | logreg | hgb |\n|---|---|---|---|")
    for name, loader in (("wine", load_wine), ("breast_cancer", load_breast_cancer), ("digits", load_digits)):
        X, y = loader(return_X_y=True)
        for n in SIZES:
            acc = {"logreg": [], "hgb": []}
            for seed in seeds:
                X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
                if n >= len(y_tr):
                    break
                rows = train_test_split(np.arange(len(y_tr)), train_size=n, stratify=y_tr, random_state=seed)[0]
                for model in acc:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        fitted = make_model(model, random_state=seed).fit(X_tr[rows], y_tr[rows])
                    acc[model].append(100 * np.mean(fitted.predict(X_te) == y_te))
            if acc["logreg"]:
                print(f"| {name} | {n} | {np.mean(acc['logreg']):.1f} | {np.mean(acc['hgb']):.1f} |", flush=True)


if __name__ == "__main__":
    main()
