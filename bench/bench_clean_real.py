"""Cleaning real data sets with few errors, as a user runs it: `pseudolabel clean` on an .npz of
images and labels, then the flagged set scored against injected errors, side by side with
cleanlab's `find_label_issues` on the same out-of-fold probabilities (issue 13).

    .venv/bin/python bench/bench_clean_real.py [--cases given,sym1,pairs2,digits5] [--jobs 2] [--budget 5m]
                                               [--out FILE.json] [--write-docs]
    .venv/bin/python bench/bench_clean_real.py --from-json FILE.json [FILE.json ...] --write-docs  # tables only

Cases (noise is injected on top of the labels as given, seeded by --noise-seed; the recipe was
chosen on MNIST training images and digits noise draws 1 and 3, never on these draws):
- given: the 10,000 MNIST test images with their labels as given (a handful of real errors):
  out-of-fold accuracy against the given labels and the wall time of the whole run;
- sym1 / pairs2: the same images with 1 % symmetric / 2 % pair-flip noise: precision, recall, F1
  of the flagged set against the injected mask, and cleanlab's on the same probabilities;
- digits5: scikit-learn's digits (1,797) with 5 % symmetric noise.
Each case runs the real job (`run_clean`, default recipe) in a fresh directory; the out-of-fold
probabilities are read back from its fold files.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_selftrain import machine, write_docs  # noqa: E402
from pseudolabel.datasets import inject_noise, load_digits, load_mnist  # noqa: E402
from pseudolabel.jobs.clean import detection_scores, run_clean  # noqa: E402
from pseudolabel.runs import RunDirectory  # noqa: E402

MARKER = "bench_clean_real"


def _data(case: str):
    if case == "digits5":
        ds = load_digits()
        return ds.X, ds.y, ("symmetric", 0.05)
    ds = load_mnist()
    noise = {"given": None, "sym1": ("symmetric", 0.01), "pairs2": ("pairs", 0.02)}[case]
    return ds.X_test, ds.y_test, noise


def _oof(run_path: Path, n: int) -> np.ndarray:
    """The first pass's out-of-fold probabilities, from the run's fold files."""
    run = RunDirectory(run_path)
    parts, k = [], 0
    while (saved := run.load_checkpoint(f"fold-{k}.joblib")) is not None:
        parts.append(saved)
        k += 1
    proba = np.zeros((n, parts[0]["proba"].shape[1]))
    for p in parts:
        proba[p["test"]] = p["proba"]
    return proba


def run_case(case: str, jobs: int, seed: int, noise_seed: int, work: Path, budget: str | None = None) -> dict:
    from cleanlab.filter import find_label_issues

    X, y_given, noise = _data(case)
    y, noisy = y_given, np.zeros(len(y_given), bool)
    if noise is not None:
        y, noisy = inject_noise(y_given, noise[1], kind=noise[0], random_state=noise_seed)
    data = work / f"{case}.npz"
    np.savez(data, X=X, y=y)
    t0 = time.perf_counter()
    config = {"data": str(data), "jobs": jobs, "seed": seed, **({"budget": budget} if budget else {})}
    result = run_clean(config, work / case, say=lambda line: None)
    seconds = time.perf_counter() - t0
    s = result.summary
    issues = result.issues
    flagged = np.zeros(len(y), bool)
    flagged[issues.loc[issues["is_issue"], "item"].to_numpy()] = True
    row = {"case": case, "n": len(y), "n_noisy": int(noisy.sum()), "seconds": round(seconds, 1),
           "oof_accuracy_given": round(s["oof_accuracy_given"], 4), "n_flagged": int(flagged.sum()),
           "estimated_wrong": s["estimated_wrong"]}
    if noise is not None:
        ours = detection_scores(flagged, noisy)
        proba = _oof(result.run.path, len(y))
        cl = np.zeros(len(y), bool)
        cl[find_label_issues(y, proba)] = True
        theirs = detection_scores(cl, noisy)
        row.update({"precision": round(ours["precision"], 4), "recall": round(ours["recall"], 4),
                    "f1": round(ours["f1"], 4), "cleanlab_flagged": int(cl.sum()),
                    "cleanlab_f1": round(theirs["f1"], 4), "cleanlab_precision": round(theirs["precision"], 4),
                    "cleanlab_recall": round(theirs["recall"], 4)})
    return row


def table(rows: list[dict]) -> str:
    lines = [f"Machine: {machine()}; recipe seed 0; one run per row (`pseudolabel clean`'s default recipe, "
             "--jobs 2). Noise seeds and the command are in each row.", "",
             "| case | budget | n | wrong (injected) | estimated wrong [95 %] | flagged | OOF acc. vs given | "
             "precision | recall | F1 | cleanlab F1 (flagged) | seconds | load avg. | command |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e = r["estimated_wrong"]
        est = f"{e['count']:.0f} [{e['low']}-{e['high']}]"
        det = (f"{r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['cleanlab_f1']:.4f} "
               f"({r['cleanlab_flagged']})" if "f1" in r else "- | - | - | -")
        wrong = r["n_noisy"] if "f1" in r else "real, unknown"
        lines.append(f"| {r['case']} | {r.get('budget') or '-'} | {r['n']} | {wrong} | {est} | {r['n_flagged']} | "
                     f"{r['oof_accuracy_given']:.4f} | {det} | {r['seconds']:.0f} | {r.get('load', float('nan')):.1f} | "
                     f"`{r.get('command', '')}` |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="given,sym1,pairs2,digits5")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise-seed", type=int, default=11)
    ap.add_argument("--budget", default=None, help="pass --budget to every run, e.g. 5m")
    ap.add_argument("--from-json", nargs="+", default=None, help="only print (and write) the table of these results")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "clean_real.json"))
    args = ap.parse_args()
    if args.from_json:
        rows = [r for f in args.from_json for r in json.loads(Path(f).read_text())]
    else:
        rows = []
        command = "python bench/bench_clean_real.py " + " ".join(sys.argv[1:])
        with tempfile.TemporaryDirectory() as tmp:
            for case in args.cases.split(","):
                load = os.getloadavg()[0]
                row = run_case(case, args.jobs, args.seed, args.noise_seed, Path(tmp), args.budget)
                rows.append({**row, "budget": args.budget, "noise_seed": args.noise_seed, "command": command.strip(),
                             "load": round((load + os.getloadavg()[0]) / 2, 1)})
                print(json.dumps(rows[-1]), flush=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))
    text = table(rows)
    print(text)
    if args.write_docs:
        write_docs("## Cleaning data with few errors (issue 13)\n\n" + text, MARKER)


if __name__ == "__main__":
    main()
