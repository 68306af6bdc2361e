"""The accuracy frontier on a CPU (issue: beat published semi-supervised MNIST results) and CNN speed.

    python bench/bench_frontier.py --part speed [--write-docs]
    python bench/bench_frontier.py --part accuracy --labeled 100,1000,60000 --seeds 0,1,2 [--write-docs]

speed: training and inference samples/s of the seed CNN (as the case study wrote it) and of our
networks, the multiply-adds each needs per image, and the share of this machine's float32
matrix-multiply peak (a large torch.mm, timed here) that each one reaches.
accuracy: pseudolabel's "frontier" self-training recipe (--recipe) at each number of labels (stratified, drawn
with the seed), and the same network trained on all 60,000 labels; test accuracy after every
round against wall time. Each run's JSON goes to bench/results/frontier-L{labels}-s{seed}.json;
--write-docs rebuilds the table (median over the seeds found) and the curves from all of them.
The recipe was chosen with bench/explore_recipes.py on a development split carved from the
training set; test labels are only reported.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_selftrain import machine, measure, write_docs  # noqa: E402
from pseudolabel.datasets import load_mnist  # noqa: E402
from pseudolabel.jobs.selftrain import DEFAULTS, FULL_LABELS, RECIPES, build_selftraining, hide_labels  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGETS = {100: 0.992, 1000: 0.994, 60000: 0.995}
ANCHORS = {100: "Bad GAN 99.21, Improved GAN 99.07, Ladder 98.94, VAT 98.64, Pseudo-Label 89.5",
           1000: "Ladder 99.16, VAT 98.68, the seed 95.60", 60000: "seed CNN 98.52"}


def macs_per_image(net: torch.nn.Module, shape: tuple) -> int:
    """Multiply-adds of one forward pass of one image (convolutions and linear layers)."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += out[0].numel() * k
        elif isinstance(mod, torch.nn.Linear):
            total += mod.in_features * mod.out_features

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    net.eval()
    with torch.no_grad():
        net(torch.zeros((1,) + tuple(shape)))
    for h in hooks:
        h.remove()
    return total


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of an n x n x n torch.mm on this machine."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def speed(X, y, repeats: int = 3) -> dict:
    seed_kw = dict(arch="seed", optimizer="adam", lr=1e-3, weight_decay=0.0, augment=None, channels_last=False)
    nets = {
        "seed CNN, batch 64 (as published)": dict(seed_kw, batch_size=64),
        "seed CNN, batch 256": dict(seed_kw, batch_size=256),
        "fast": dict(arch="fast", augment=None),
        "strided": dict(arch="strided", augment=None),
        "strided + augmentation + EMA (the recipe)": dict(arch="strided", augment="affine", ema=0.999),
    }
    out = {"peak_gflops": matmul_peak(), "nets": {}}
    for name, kw in nets.items():
        rates, clf = measure(dict(kw, inference_batch_size=256, random_state=0), X, y, repeats)
        out["nets"][name] = {**rates, "macs": macs_per_image(clf.module_, clf.input_shape_)}
        print(name, out["nets"][name], flush=True)
    return out


def speed_table(res: dict, cmd: str) -> str:
    peak = res["peak_gflops"]
    nets = res["nets"]
    base_t = max(v["train"] for k, v in nets.items() if k.startswith("seed"))
    base_i = nets["seed CNN, batch 64 (as published)"]["infer"]
    lines = [f"Command: `{cmd}`  ", f"Machine: {machine()}; float32 matrix-multiply peak measured here "
             f"(2048^3 torch.mm, best of 5): {peak:.0f} GFLOP/s  ", "",
             "One epoch of training and one pass of inference over the first 10,000 MNIST training images, "
             "median of 3; inference in batches of 256 for every network. Training ratios are against the "
             "faster of the two seed rows. FLOP/s counts 2 per multiply-add, training as 3 forward passes.", "",
             "| network | M multiply-adds / image | training samples/s | inference samples/s | training vs seed "
             "| inference vs seed | training % of peak | inference % of peak |", "|---|---|---|---|---|---|---|---|"]
    for name, v in nets.items():
        tr_flops = v["train"] * v["macs"] * 6 / 1e9
        in_flops = v["infer"] * v["macs"] * 2 / 1e9
        lines.append(f"| {name} | {v['macs'] / 1e6:.2f} | {v['train']:.0f} | {v['infer']:.0f} | "
                     f"{v['train'] / base_t:.2f}x | {v['infer'] / base_i:.2f}x | {100 * tr_flops / peak:.1f} % "
                     f"| {100 * in_flops / peak:.1f} % |")
    return "\n".join(lines)


def run_accuracy(labeled: int, seed: int, ds, recipe: str = "frontier") -> dict:
    X, y, Xt, yt = ds.X, ds.y, ds.X_test, ds.y_test
    t0 = time.perf_counter()
    curve = []
    if labeled >= len(y):
        config = {**DEFAULTS, **FULL_LABELS, "seed": seed}
        st = build_selftraining(config)
        clf = st.estimator

        def on_epoch(est, rec):  # test accuracy after every epoch, for the curve only
            curve.append({"round": rec["epoch"], "elapsed_s": time.perf_counter() - t0,
                          "test_accuracy": float(est.score(Xt, yt))})
            print(f"  [all labels seed {seed}] epoch {rec['epoch']}: test {curve[-1]['test_accuracy']:.4f} "
                  f"at {curve[-1]['elapsed_s']:.0f} s", flush=True)

        clf.set_params(callbacks=[on_epoch], epochs=config["epochs"])
        clf.fit(X, y)
        final = float(clf.score(Xt, yt))
    else:
        config = {**RECIPES[recipe], "seed": seed}
        st = build_selftraining(config)

        def on_round(est, rec):
            curve.append({"round": rec["round"], "elapsed_s": time.perf_counter() - t0,
                          "test_accuracy": rec["test_accuracy"], "n_labeled": rec["n_labeled"],
                          "added_accuracy": rec.get("added_accuracy")})
            print(f"  [{labeled} labels seed {seed}] round {rec['round']}: test {rec['test_accuracy']:.4f} "
                  f"at {curve[-1]['elapsed_s']:.0f} s", flush=True)

        st.callback = on_round
        st.fit(X, hide_labels(y, labeled, seed), eval_set=(Xt, yt), y_true=y)
        final = curve[-1]["test_accuracy"]
    total = time.perf_counter() - t0
    return {"labeled": labeled, "seed": seed, "recipe": recipe if labeled < len(y) else "full labels",
            "config": {k: v for k, v in config.items() if k != "device"},
            "curve": curve, "final_test_accuracy": final, "total_s": total}


def accuracy_table(runs: list[dict], cmd: str) -> str:
    lines = [f"Command: `{cmd}`  ", f"Machine: {machine()}  ", "",
             "| labeled | seeds | test accuracy (median) | min - max | wall time per run (median, s) | target "
             "| met | published anchors |", "|---|---|---|---|---|---|---|---|"]
    by: dict[int, list] = {}
    for r in runs:
        by.setdefault(r["labeled"], []).append(r)
    for labeled in sorted(by):
        rs = by[labeled]
        accs = [r["final_test_accuracy"] for r in rs]
        med = statistics.median(accs)
        t = statistics.median([r["total_s"] for r in rs])
        target = TARGETS.get(labeled)
        met = "-" if target is None else ("yes" if med >= target and t <= 900 and len(rs) >= 3 else "no")
        lines.append(f"| {labeled} | {','.join(str(r['seed']) for r in sorted(rs, key=lambda r: r['seed']))} "
                     f"| {100 * med:.2f} % | {100 * min(accs):.2f} - {100 * max(accs):.2f} | {t:.0f} "
                     f"| {'-' if target is None else f'{100 * target:.1f} %'} | {met} | {ANCHORS.get(labeled, '')} |")
    lines += ["", "'met' needs the median of 3 seeds at or above the target and at most 15 minutes per run. "
              "Wall time includes scoring the test set after every round (epoch, with all labels) for the "
              "curves.", "", "![accuracy against wall time](img/frontier-curves.png)"]
    return "\n".join(lines)


def plot_curves(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = {}
    for r in sorted(runs, key=lambda r: (r["labeled"], r["seed"])):
        c = colors.setdefault(r["labeled"], f"C{len(colors)}")
        xs = [p["elapsed_s"] for p in r["curve"]]
        ys = [100 * p["test_accuracy"] for p in r["curve"]]
        ax.plot(xs, ys, "o-", color=c, ms=3, label=f"{r['labeled']} labels" if r["seed"] == min(
            q["seed"] for q in runs if q["labeled"] == r["labeled"]) else None)
    for labeled, target in TARGETS.items():
        if labeled in colors:
            ax.axhline(100 * target, color=colors[labeled], ls=":", lw=1)
    ax.set_xlabel("wall time (s), 2-core CPU")
    ax.set_ylabel("MNIST test accuracy (%)")
    ax.set_ylim(bottom=max(80, ax.get_ylim()[0]))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def mnist():
    shared = ROOT.parent / "shared" / "data"  # the project's copy, when PSEUDOLABEL_DATA is not set
    return load_mnist(shared if "PSEUDOLABEL_DATA" not in os.environ and shared.is_dir() else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["speed", "accuracy"], required=True)
    ap.add_argument("--labeled", default="1000")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--recipe", default="frontier", help="Self-training recipe by name (jobs.selftrain.RECIPES).")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--from-json", action="store_true", help="Only rebuild the docs from bench/results.")
    args = ap.parse_args()
    cmd = "python bench/bench_frontier.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.part == "speed":
        file = RESULTS / "frontier-speed.json"
        if args.from_json:
            res = json.loads(file.read_text())
        else:
            ds = mnist()
            res = {"command": cmd, **speed(ds.X[:10000], ds.y[:10000])}
            file.write_text(json.dumps(res, indent=1))
        section = "## CNN speed on this CPU\n\n" + speed_table(res, res["command"])
        print(section)
        if args.write_docs:
            write_docs(section, "bench_frontier_speed")
        return
    if not args.from_json:
        ds = mnist()
        for labeled in [int(v) for v in args.labeled.split(",")]:
            for seed in [int(v) for v in args.seeds.split(",")]:
                res = {"command": cmd, **run_accuracy(labeled, seed, ds, args.recipe)}
                (RESULTS / f"frontier-L{labeled}-s{seed}.json").write_text(json.dumps(res, indent=1))
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("frontier-L*-s*.json"))]
    cmds = sorted({r["command"] for r in runs})
    section = ("## Accuracy frontier: MNIST test accuracy by number of labels\n\n"
               + accuracy_table(runs, "; ".join(cmds)))
    print(section)
    if args.write_docs:
        plot_curves(runs, ROOT / "docs" / "img" / "frontier-curves.png")
        write_docs(section, "bench_frontier_accuracy")


if __name__ == "__main__":
    main()
