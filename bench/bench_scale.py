"""Scale benchmark (issue #15): scoring pools of 10k, 100k and 1M 28x28 images that live on disk,
locally and on a local Ray runtime; the label store with 1M pseudo-label events.

    python bench/bench_scale.py                       # everything (about 20-40 minutes on 2 cores)
    python bench/bench_scale.py --sizes 10000,100000  # a quicker subset
    python bench/bench_scale.py --skip-ray --skip-store

Each scoring case runs in a fresh subprocess, so its peak memory is its own: the driver's peak
RSS (VmHWM) and, sampled every 0.2 s, the peak RSS summed over the driver and every process it
started (a Ray runtime's raylet, object store and actors). Throughput is items per second of the
whole job, part files and the merged Parquet included; the in-memory baseline is one
``predict_proba`` over the whole array loaded into memory (the path a job without ``--pool``
takes). Pools are written in chunks with ``np.lib.format.open_memmap`` (784 MB for 1M) under
--workdir. Results: bench/results/scale.json; docs/benchmarks.md holds the table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "scale.json"
NOTE = "the 2-core reference machine; the load averages at start and end say how quiet it was"


def _mnist():
    path = Path(os.environ.get("PSEUDOLABEL_DATA", ROOT.parent / "shared" / "data")) / "mnist.npz"
    with np.load(path) as d:
        return d["x_train"], d["y_train"].astype(np.int64)


def make_pool(path: Path, n: int, chunk: int = 100_000) -> Path:
    """n MNIST-like 28x28 uint8 images: training images shifted by a pixel and noised, so every
    item differs; written chunk by chunk (never the whole pool in memory)."""
    if path.is_file() and np.load(path, mmap_mode="r").shape[0] == n:
        return path
    x, _ = _mnist()
    rng = np.random.default_rng(n)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 28, 28))
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        base = x[rng.integers(0, len(x), m)].astype(np.int16)
        base = np.roll(base, int(rng.integers(-1, 2)), axis=2)
        base += rng.integers(-20, 21, size=base.shape, dtype=np.int16)
        out[start:start + m] = np.clip(base, 0, 255).astype(np.uint8)
    out.flush()
    del out
    return path


def make_run(folder: Path) -> Path:
    """A run directory holding the default model (ConvNetClassifier, arch auto) fitted on 500 MNIST
    images for 3 epochs: scoring speed depends on the network, not on how well it was trained."""
    if (folder / "model.joblib").is_file():
        return folder
    import joblib

    from pseudolabel.models import ConvNetClassifier

    x, y = _mnist()
    model = ConvNetClassifier(epochs=3, random_state=0).fit(x[:500], y[:500])
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    return folder


# ------------------------------------------------------------------ one case, in its own process

def _tree_rss_kb(root: int) -> int:
    """RSS of ``root`` and all its descendants (from /proc), in kB."""
    parent = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
                parent[int(p.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        cur = frontier.pop()
        for pid, pp in parent.items():
            if pp == cur and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    total = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def _hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run_case(args) -> dict:
    import torch

    torch.set_num_threads(int(args.threads))
    peak = {"tree": 0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak["tree"] = max(peak["tree"], _tree_rss_kb(os.getpid()))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    if args.mode == "memory":
        import joblib

        model = joblib.load(Path(args.run) / "model.joblib")
        X = np.load(args.pool)  # the whole pool in memory, as a job without --pool holds it
        t0 = time.perf_counter()
        proba = model.predict_proba(X)
        n = len(proba)
    else:
        from pseudolabel.jobs.score import run_score

        out = Path(args.out)
        res = run_score({"run": args.run, "pool": args.pool, "chunk_size": args.chunk_size,
                         "cluster": "local" if args.mode == "ray" else None}, out, say=lambda m: None)
        n = res.n_items
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    return {"mode": args.mode, "n": n, "seconds": seconds, "items_per_s": n / seconds,
            "driver_peak_rss_mb": _hwm_kb() / 1024, "tree_peak_rss_mb": peak["tree"] / 1024}


def case_in_subprocess(mode: str, n: int, pool: Path, run: Path, work: Path, chunk_size: int, threads: int) -> dict:
    out = work / f"scores-{mode}-{n}.parquet"
    for p in (out, out.with_name(out.name + ".parts")):
        subprocess.run(["rm", "-rf", str(p)], check=True)
    cmd = [sys.executable, __file__, "--case", mode, "--pool", str(pool), "--run", str(run), "--out", str(out),
           "--chunk-size", str(chunk_size), "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    if proc.returncode != 0:
        raise SystemExit(f"case {mode} {n} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


# ------------------------------------------------------------------------------- the store at 1M

def bench_store(work: Path, n: int) -> dict:
    from pseudolabel.store import LabelStore

    path = work / f"store-{n}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    rng = np.random.default_rng(0)
    store = LabelStore(path)
    store.set_classes([str(d) for d in range(10)])
    out = {"events": n}
    t = time.perf_counter()
    ids = np.concatenate([store.add_items([f"pool/{i}" for i in range(s, min(s + 200_000, n))])
                          for s in range(0, n, 200_000)])
    out["add_items_s"] = time.perf_counter() - t
    labels = rng.integers(0, 10, n)
    conf = rng.uniform(0.9, 1.0, n)
    t = time.perf_counter()
    store.add_labels(ids, labels, "pseudo", confidence=conf, round=1, run_id="bench", model_id="bench/round-1")
    out["add_labels_s"] = time.perf_counter() - t
    out["add_labels_per_s"] = n / out["add_labels_s"]
    t = time.perf_counter()
    low = store.queue("audit", least_confident=100, per_class=0)
    out["least_confident_100_s"] = time.perf_counter() - t
    out["least_confident_ok"] = bool(np.allclose(np.sort(low["confidence"].to_numpy()), np.sort(conf)[:100]))
    t = time.perf_counter()
    audit = store.queue("audit", least_confident=20, per_class=5)
    out["audit_per_class_s"] = time.perf_counter() - t
    out["audit_rows"] = len(audit)
    t = time.perf_counter()
    store.export(work / f"export-{n}.parquet", "parquet")
    out["export_parquet_s"] = time.perf_counter() - t
    store.close()
    out["store_mb"] = path.stat().st_size / 1e6
    print(json.dumps(out), flush=True)
    return out


def machine() -> dict:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_at_start": [round(v, 2) for v in load],
            "note": NOTE}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "pseudolabel-bench-scale"))
    ap.add_argument("--chunk-size", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of a local scoring job")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-store", action="store_true")
    ap.add_argument("--store-events", type=int, default=1_000_000)
    ap.add_argument("--memory-max", type=int, default=1_000_000, help="largest pool for the in-memory baseline")
    ap.add_argument("--ray-max", type=int, default=1_000_000, help="largest pool scored on a local Ray runtime")
    ap.add_argument("--results", default=str(RESULTS), help="where the JSON goes")
    ap.add_argument("--repeats", type=int, default=3, help="runs per case up to --repeat-max items (the median is "
                                                            "reported)")
    ap.add_argument("--repeat-max", type=int, default=100_000, help="larger pools run once")
    ap.add_argument("--table", metavar="JSON", help="print the markdown table of a results file and stop")
    # one case (internal): run in a subprocess by main
    ap.add_argument("--case", choices=["memory", "local", "ray"])
    ap.add_argument("--pool")
    ap.add_argument("--run")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.case:
        args.mode = args.case
        print(json.dumps(run_case(args)))
        return
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    report = {"machine": machine(), "chunk_size": args.chunk_size, "threads": args.threads, "scoring": [],
              "store": None}
    run = make_run(work / "run")
    for n in sizes:
        t = time.perf_counter()
        pool = make_pool(work / f"pool-{n}.npy", n)
        print(f"pool {n}: {time.perf_counter() - t:.1f} s", flush=True)
        modes = ((["memory"] if n <= args.memory_max else []) + ["local"]
                 + ([] if args.skip_ray or n > args.ray_max else ["ray"]))
        for mode in modes:
            runs = [case_in_subprocess(mode, n, pool, run, work, args.chunk_size, args.threads)
                    for _ in range(args.repeats if n <= args.repeat_max else 1)]
            row = {k: (float(np.median([r[k] for r in runs])) if isinstance(runs[0][k], float) else runs[0][k])
                   for k in runs[0]}
            report["scoring"].append({**row, "repeats": len(runs), "runs": runs})
            Path(args.results).write_text(json.dumps(report, indent=2))
    if not args.skip_store:
        report["store"] = bench_store(work, args.store_events)
    report["machine"]["load_at_end"] = [round(v, 2) for v in os.getloadavg()]
    Path(args.results).write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"wrote {args.results}")


def table(report: dict) -> str:
    """The scoring rows as docs/benchmarks.md shows them (medians of the repeats)."""
    names = {"memory": "in memory", "local": "chunked, local", "ray": "chunked, `--cluster local`"}
    lines = ["| pool | path | runs | items/s | driver peak RSS | tree peak RSS |", "|---|---|---|---|---|---|"]
    for r in report["scoring"]:
        lines.append(f"| {r['n']:,} | {names[r['mode']]} | {r.get('repeats', 1)} | {r['items_per_s']:,.0f} | "
                     f"{r['driver_peak_rss_mb']:,.0f} MB | {r['tree_peak_rss_mb']:,.0f} MB |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
