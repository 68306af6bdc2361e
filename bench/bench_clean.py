"""Label cleaning on MNIST: every ranking method and cleanlab on the same out-of-fold probabilities.

    .venv/bin/python bench/bench_clean.py [--noise 0.1,0.4] [--folds 5] [--epochs E] [--limit N] [--write-docs]
    .venv/bin/python bench/bench_clean.py --from-json bench/results/FILE.json --write-docs   # tables only

For each noise level: symmetric noise is injected into the training labels (seeded); out-of-fold
probabilities are computed once (stratified folds, `pseudolabel clean`'s CNN recipe); then each
ranking method of `rank_label_issues` and cleanlab's `filter.find_label_issues` run on those same
probabilities: flagged count, precision, recall, F1 against the injected mask, and the share of
correct labels after fixing (relabel, and drop: share correct among the kept). Test accuracy is
measured after training the same CNN on the noisy, fixed (relabel / drop, with `--eval-methods`)
and true labels. Wall time per phase. --write-docs puts the tables into docs/benchmarks.md between
this script's markers.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_selftrain import machine, write_docs  # noqa: E402
from pseudolabel.crossval import out_of_fold_proba  # noqa: E402
from pseudolabel.datasets import inject_noise, load_mnist  # noqa: E402
from pseudolabel.issues import METHODS, fix_labels, rank_label_issues  # noqa: E402
from pseudolabel.jobs.clean import (DEFAULTS, build_estimator, detection_scores, fit_and_score,  # noqa: E402
                                   combine_passes, later_pass_labels, n_passes, pass_config)

MARKER = "bench_clean"
EXTRA = "extra, not part of the run: "


def cleanlab_issues(y: np.ndarray, proba: np.ndarray) -> pd.DataFrame:
    """cleanlab's default find_label_issues as an issues frame that fix_labels takes."""
    from cleanlab.filter import find_label_issues

    mask = find_label_issues(y, proba, n_jobs=1)
    issues = rank_label_issues(y, proba, method="self_confidence")
    issues["is_issue"] = mask[issues["item"].to_numpy()]
    return issues


def flagged_mask(issues: pd.DataFrame, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[issues.loc[issues["is_issue"], "item"].to_numpy()] = True
    return out


def score_method(name: str, y_noisy, y_true, noisy, proba, threshold: float,
                 prune_threshold: float) -> tuple[dict, dict]:
    t0 = time.perf_counter()
    issues = cleanlab_issues(y_noisy, proba) if name == "cleanlab" else rank_label_issues(y_noisy, proba, method=name)
    rank_s = time.perf_counter() - t0
    flagged = flagged_mask(issues, len(y_noisy))
    relabeled = fix_labels(y_noisy, proba, threshold=threshold, policy="relabel", issues=issues)
    relabel_all = fix_labels(y_noisy, proba, threshold=0.0, policy="relabel", issues=issues)
    dropped = fix_labels(y_noisy, proba, threshold=threshold, policy="drop", issues=issues)
    kept = dropped >= 0
    pruned = fix_labels(y_noisy, proba, threshold=prune_threshold, policy="prune", issues=issues)
    kept_p = pruned >= 0
    row = {
        "method": name, "flagged": int(flagged.sum()), **detection_scores(flagged, noisy),
        "relabeled": int(np.sum(relabeled != y_noisy)), "correct_relabel": float(np.mean(relabeled == y_true)),
        "correct_relabel_all": float(np.mean(relabel_all == y_true)),
        "dropped": int(np.sum(~kept)), "correct_drop": float(np.mean(dropped[kept] == y_true[kept])),
        "pruned": int(np.sum(~kept_p)), "correct_prune": float(np.mean(pruned[kept_p] == y_true[kept_p])),
        "rank_s": rank_s,
    }
    return row, {"relabel": relabeled, "drop": dropped, "prune": pruned}


def timed_fit(config, X, y, Xt, yt) -> tuple[float, float]:
    t0 = time.perf_counter()
    return fit_and_score(config, X, y, Xt, yt), time.perf_counter() - t0


def run_level(rate: float, X, y, Xt, yt, config: dict, args, true_cache: dict, log) -> dict:
    seed = config["seed"]
    y_noisy, noisy = inject_noise(y, rate, random_state=seed, n_classes=10)
    level = {"noise": rate, "n": len(y), "n_noisy": int(noisy.sum()), "seed": seed, "phases": {},
             "prune_threshold": args.prune_threshold}
    t0 = time.perf_counter()

    def on_fold(k, n_folds, info):
        log(f"  noise {rate:g}: fold {k + 1}/{n_folds} held-out accuracy {info['accuracy']:.4f} (given labels), "
            f"{info['seconds']:.0f} s")

    saved = Path(args.load_proba or "") / f"proba_noise{rate:g}.npz"
    if args.load_proba and saved.is_file():  # development: reuse a pass computed with the same seed
        with np.load(saved) as d:
            proba = d["proba"]
            assert np.array_equal(d["y_noisy"], y_noisy), "saved probabilities are for other labels"
        log(f"  noise {rate:g}: out-of-fold probabilities loaded from {saved}")
    else:
        proba = out_of_fold_proba(build_estimator(config), X, y_noisy, cv=args.folds, random_state=seed,
                                  n_jobs=args.n_jobs, callback=on_fold)
        level["phases"][f"out-of-fold ({args.folds} folds, {args.n_jobs} in parallel)"] = time.perf_counter() - t0
    level["oof_accuracy_true"] = float(np.mean(proba.argmax(1) == y))
    level["passes"] = []
    level["n_passes"] = n_passes(config, y_noisy, proba)
    passes = [proba]
    for p in range(2, level["n_passes"] + 1):
        # `pseudolabel clean --passes N`: the folds train again (the later passes' recipe, each label
        # weighted by its posterior) on the labels the pass before fixed; what is ranked against the
        # given labels is the passes' mean (the job's defaults; jobs.clean.later_pass_labels).
        fixed, weights = later_pass_labels(config, y_noisy, proba)
        t0 = time.perf_counter()
        passes.append(out_of_fold_proba(build_estimator(pass_config(config, p)), X, fixed, cv=args.folds,
                                        random_state=seed, n_jobs=args.n_jobs, callback=on_fold,
                                        sample_weight=weights))
        proba = combine_passes(config, passes)
        level["phases"][f"out-of-fold pass {p}"] = time.perf_counter() - t0
        level["passes"].append({"pass": p, "trained_on_correct": float(np.mean(fixed == y)),
                                "oof_accuracy_true": float(np.mean(passes[-1].argmax(1) == y)),
                                "combined_accuracy_true": float(np.mean(proba.argmax(1) == y)),
                                "weighted": weights is not None, "averaged": bool(config.get("average_passes"))})
        log(f"  noise {rate:g}: pass {p}: trained on {level['passes'][-1]['trained_on_correct']:.4f} correct "
            f"labels, out-of-fold accuracy {level['passes'][-1]['oof_accuracy_true']:.4f}")
    if args.save_proba:
        np.savez_compressed(Path(args.out) / f"proba_noise{rate:g}.npz", proba=proba, y_noisy=y_noisy, y=y)
    t0 = time.perf_counter()
    labels_for = {}
    level["methods"] = []
    for name in list(METHODS) + ["cleanlab"]:
        row, fixed = score_method(name, y_noisy, y, noisy, proba, config["threshold"], args.prune_threshold)
        level["methods"].append(row)
        labels_for[name] = fixed
        log(f"  noise {rate:g}: {name}: flagged {row['flagged']} precision {row['precision']:.4f} "
            f"recall {row['recall']:.4f} f1 {row['f1']:.4f} correct after relabel {row['correct_relabel']:.4f}")
    level["phases"]["ranking and fixing (all methods)"] = time.perf_counter() - t0

    level["test"] = {}
    level["fit_s"] = {}
    to_train, extra = [("noisy", y_noisy)], []
    for m in args.eval_methods.split(","):
        m = DEFAULTS["method"] if m == "default" else m
        to_train += [(f"{m} relabel", labels_for[m]["relabel"]), (f"{m} drop", labels_for[m]["drop"])]
        extra.append((f"{m} prune", labels_for[m]["prune"]))
    if "true" not in true_cache:
        to_train.append(("true", y))
    # The issue's models (noisy, relabel, drop, true) make "the run"; prune's model is an extra
    # comparison, timed apart so the run's wall time stays comparable.
    for phase, batch in (("test-accuracy models", to_train), (EXTRA + "prune test-accuracy models", extra)):
        t0 = time.perf_counter()
        # Independent fits: with n_jobs=2 each worker gets one torch thread (joblib's default), which on
        # 2 cores beats one process with 2 threads, whose OpenMP threads spin against any other load.
        fits = Parallel(n_jobs=args.n_jobs, max_nbytes=None)(
            delayed(timed_fit)(config, X, labels, Xt, yt) for _, labels in batch)
        level["phases"][f"{phase}: {len(batch)} ({args.n_jobs} in parallel)"] = time.perf_counter() - t0
        for (what, _), (acc, secs) in zip(batch, fits):
            level["test"][what] = acc
            level["fit_s"][what] = secs
            log(f"  noise {rate:g}: test accuracy after training on {what} labels {acc:.4f} ({secs:.0f} s)")
    if "true" in level["test"]:
        true_cache["true"] = level["test"].pop("true")
    level["test"]["true"] = true_cache["true"]
    level["total_s"] = sum(level["phases"].values())
    level["run_s"] = sum(v for k, v in level["phases"].items() if not k.startswith(EXTRA))
    return level


def tables(levels: list[dict], config: dict, cmd: str) -> str:
    recipe = ", ".join(f"{k} {config.get(k)}" for k in ("arch", "epochs", "eval_epochs", "batch_size", "lr",
                                                         "augment", "ema"))
    recipe += f"; passes {config.get('passes', 1)}"
    if config.get("later_epochs") is not None or config.get("later_augment") is not None:
        recipe += (f"; from pass 2 on: epochs {config.get('later_epochs') or config.get('epochs')}, "
                   f"augment {config.get('later_augment') or config.get('augment')}")
    if config.get("later_weighted") or config.get("average_passes"):
        recipe += (f"; later passes' labels weighted by their posterior: {bool(config.get('later_weighted'))}; "
                   f"passes averaged: {bool(config.get('average_passes'))}")
    out = [f"Command: `{cmd}`  ", f"Machine: {machine()}  ",
           f"CNN per fold ({config.get('folds')} folds) and for the test-accuracy models (eval_epochs): {recipe}; "
           f"fix threshold {config['threshold']}; "
           f"the job's default method: {DEFAULTS['method']}.", ""]
    for lv in levels:
        if lv.get("command") and lv["command"] != cmd:
            out += [f"This level: `{lv['command']}`", ""]
        out += [f"**{lv['noise']:.0%} symmetric noise** ({lv['n_noisy']} of {lv['n']} labels wrong; seed {lv['seed']}; "
                f"out-of-fold accuracy against the true labels {lv['oof_accuracy_true'] * 100:.2f} %; "
                f"out-of-fold passes run: {lv.get('n_passes', 1)})", "",
                "| method | seed | flagged | precision | recall | F1 | relabeled | labels correct after relabel "
                "| (relabel every flagged) | dropped | labels correct among kept after drop "
                f"| pruned (p < {lv.get('prune_threshold', 0.9):g}) | labels correct among kept after prune |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in lv["methods"]:
            name = f"**{r['method']}** (default)" if r["method"] == DEFAULTS["method"] else r["method"]
            out.append(f"| {name} | {lv['seed']} | {r['flagged']} | {r['precision']:.4f} | {r['recall']:.4f} "
                       f"| {r['f1']:.4f} | {r['relabeled']} | {r['correct_relabel'] * 100:.2f} % "
                       f"| {r['correct_relabel_all'] * 100:.2f} % | {r['dropped']} | {r['correct_drop'] * 100:.2f} % "
                       f"| {r['pruned']} | {r['correct_prune'] * 100:.2f} % |")
        for ps in lv.get("passes", []):
            how = " (each label weighted by its posterior)" if ps.get("weighted") else ""
            ranked = (f"the mean of the passes' probabilities (out-of-fold accuracy "
                      f"{ps['combined_accuracy_true'] * 100:.2f} %)" if ps.get("averaged")
                      else "this last pass's probabilities")
            out.append(f"\nPass {ps['pass']}: the folds trained again on the labels the pass before fixed "
                       f"({ps['trained_on_correct'] * 100:.2f} % correct){how}; its out-of-fold accuracy against "
                       f"the true labels {ps['oof_accuracy_true'] * 100:.2f} %. The rows above rank the given "
                       f"labels with {ranked}.")
        out += ["", "| trained on | seed | test accuracy | fit (s) |", "|---|---|---|---|"]
        for what, acc in lv["test"].items():
            secs = lv["fit_s"].get(what)
            shown = f"{secs:.0f}" if secs is not None else "(first level's model)"
            out.append(f"| {what} labels | {lv['seed']} | {acc * 100:.2f} % | {shown} |")
        out += ["", "| phase | wall time (s) |", "|---|---|"]
        out += [f"| {p} | {s:.0f} |" for p, s in lv["phases"].items()]
        if lv.get("run_s") is not None and lv["run_s"] != lv["total_s"]:
            out.append(f"| **the run** (all but the extra) | **{lv['run_s']:.0f}** |")
        out += [f"| **total** | **{lv['total_s']:.0f}** |", ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noise", default="0.1,0.4", help="Comma-separated noise rates.")
    ap.add_argument("--folds", type=int, default=None, help="Folds (default: the clean job's).")
    ap.add_argument("--epochs", type=int, default=None, help="Epochs per fit (default: the clean job's).")
    ap.add_argument("--arch", default=None)
    ap.add_argument("--threshold", type=float, default=None, help="Fix threshold (default: the clean job's).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="Use the first N training images (development runs).")
    ap.add_argument("--eval-methods", default="default",
                    help="Methods whose fixed labels get test-accuracy models (default = the job's method; "
                         "e.g. default,cleanlab).")
    ap.add_argument("--n-jobs", type=int, default=2,
                    help="Folds and test-accuracy models trained in parallel processes, one torch thread each.")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of this process (n-jobs 1).")
    ap.add_argument("--save-proba", action="store_true", help="Keep the out-of-fold probabilities in --out.")
    ap.add_argument("--load-proba", default=None, help="Reuse probabilities a --save-proba run left in this folder.")
    ap.add_argument("--ema", type=float, default=None, help="EMA decay of the weights (default: the clean job's).")
    ap.add_argument("--no-ema", action="store_true", help="Predict with the last weights, not an average.")
    ap.add_argument("--passes", default=None,
                    help="Out-of-fold passes, or 'auto' (default: the clean job's): each further pass retrains "
                         "on the fixed labels and fixes again.")
    ap.add_argument("--later-epochs", type=int, default=None,
                    help="Epochs of the folds from pass 2 on (default: the clean job's).")
    ap.add_argument("--later-augment", default=None, choices=["affine", "none"],
                    help="Augmentation of the folds from pass 2 on (default: the clean job's).")
    ap.add_argument("--prune-threshold", type=float, default=0.9,
                    help="The prune policy's threshold: relabel the sure, drop every sample below it.")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--from-json", default=None,
                    help="Print (and with --write-docs write) the tables of earlier runs' clean.json files "
                         "(comma-separated; a later file's noise level replaces an earlier's); runs nothing.")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out"))
    args = ap.parse_args()
    if args.from_json:
        # Several files (comma-separated): a later file's level replaces an earlier one's of the
        # same noise rate (a re-run supersedes); the header names the commands and the last recipe.
        runs = [json.loads(Path(f).read_text()) for f in args.from_json.split(",")]
        by_rate = {}
        for r in runs:
            by_rate.update({lv["noise"]: dict(lv, command=r["command"]) for lv in r["levels"]})
        levels = [by_rate[k] for k in sorted(by_rate)]
        used = list(dict.fromkeys(lv["command"] for lv in levels))
        show(levels, runs[-1]["config"], "; ".join(used), args.write_docs)
        return
    args.passes = args.passes or DEFAULTS["passes"]
    args.passes = int(args.passes) if str(args.passes).isdigit() else args.passes
    args.folds = args.folds or DEFAULTS["folds"]
    cmd = "python bench/bench_clean.py " + " ".join(sys.argv[1:])
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    shared = ROOT.parent / "shared" / "data"
    ds = load_mnist(shared if "PSEUDOLABEL_DATA" not in os.environ and shared.is_dir() else None)
    X, y, Xt, yt = ds.X, ds.y, ds.X_test, ds.y_test
    if args.limit:
        X, y = X[: args.limit], y[: args.limit]
    config = dict(DEFAULTS, seed=args.seed)
    config.update({k: v for k, v in (("epochs", args.epochs), ("arch", args.arch), ("threshold", args.threshold),
                                     ("ema", args.ema), ("later_epochs", args.later_epochs),
                                     ("later_augment", args.later_augment)) if v is not None})
    if args.no_ema:
        config["ema"] = None
    config["passes"] = args.passes
    config["folds"] = args.folds
    Path(args.out).mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    levels, true_cache = [], {}
    for rate in [float(r) for r in args.noise.split(",")]:
        levels.append(run_level(rate, X, y, Xt, yt, config, args, true_cache, log))
    (Path(args.out) / "clean.json").write_text(
        json.dumps({"command": cmd, "config": config, "levels": levels}, indent=1))
    show(levels, config, cmd, args.write_docs)


def show(levels: list[dict], config: dict, cmd: str, write: bool) -> None:
    section = tables(levels, config, cmd)
    print(section)
    if write:
        title = f"## Label cleaning on MNIST ({levels[0]['n']} training images): ranking methods and cleanlab\n\n"
        write_docs(title + section, MARKER)


if __name__ == "__main__":
    main()
