"""Ray (pseudolabel.cluster): a real local runtime (2 CPUs, a capped object store, 127.0.0.1 only),
one for the whole module. Pool scoring, out-of-fold folds and the clean job's folds on it equal the
local path; a worker killed with SIGKILL mid-job is retried; a worker that keeps dying stops the job
with one line, and --resume keeps the chunks and folds that finished. A real head node (ray start
--head) is joined through Ray Client (ray://), its GCS address and auto."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

try:
    import ray
except ImportError:  # make test installs the ray extra; CI (PSEUDOLABEL_REQUIRE_ALL=1) must have it
    if os.environ.get("PSEUDOLABEL_REQUIRE_ALL") == "1":
        raise
    pytest.skip("the Ray extra is missing: pip install 'pseudolabel[ray]'", allow_module_level=True)
from ray import cloudpickle  # noqa: E402  (Ray ships its own cloudpickle; its registry is the one Ray reads)

from pseudolabel.cli import main  # noqa: E402
from pseudolabel.cluster import Cluster, ClusterError, check_address  # noqa: E402
from pseudolabel.crossval import out_of_fold_proba  # noqa: E402
from pseudolabel.exceptions import InputError  # noqa: E402
from pseudolabel.jobs.score import parts_dir, run_score  # noqa: E402

# The estimators below live in this test module, which Ray's workers cannot import: ship them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
CHUNK = 100
# The clean job with the package's CNN, briefly: 3 folds of 2 epochs on 600 digits (seconds per
# fold), one pass.
CLEAN = {"data": "digits", "folds": 3, "passes": 1, "epochs": 2, "arch": "fast", "limit": 600, "seed": 0}
# The value of a marked image's first pixel (digits' pixels are 0-16).
MARK = 99


class FlatLogistic(ClassifierMixin, BaseEstimator):
    """LogisticRegression over flattened images. ``die_once``: the first fit or predict in any
    process creates that file with its pid and SIGKILLs its own process (a worker dying mid-job).
    ``poison``: while that file exists, scoring the chunk ``poison_chunk`` (its first image's first
    pixel holds the chunk number) kills the process every time. ``fold_poison``: while that file
    exists, a fit on rows that lack the image marked with :data:`MARK` (the fold that holds it out)
    kills the process every time. ``log``: a line per scored chunk."""

    def __init__(self, die_once: str = "", poison: str = "", poison_chunk: int = -1, log: str = "",
                 spare_pid: int = -1, fold_poison: str = ""):
        self.die_once, self.poison, self.poison_chunk, self.log = die_once, poison, poison_chunk, log
        self.spare_pid = spare_pid  # never this process (pytest's own, where a job checks the model)
        self.fold_poison = fold_poison

    def _maybe_die(self):
        if os.getpid() == self.spare_pid:
            return
        if self.die_once and not os.path.exists(self.die_once):
            Path(self.die_once).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

    def fit(self, X, y):
        self._maybe_die()
        X = np.asarray(X)
        if (self.fold_poison and os.path.exists(self.fold_poison) and not (X[:, 0, 0] == MARK).any()
                and os.getpid() != self.spare_pid):
            os.kill(os.getpid(), signal.SIGKILL)
        self.lr_ = LogisticRegression(max_iter=300).fit(np.asarray(X, dtype=float).reshape(len(X), -1) / 16, y)
        self.classes_ = self.lr_.classes_
        return self

    def predict_proba(self, X):
        X = np.asarray(X, dtype=float)
        chunk = int(X[0, 0, 0]) if len(X) else -1
        if self.poison and os.path.exists(self.poison) and chunk == self.poison_chunk and os.getpid() != self.spare_pid:
            os.kill(os.getpid(), signal.SIGKILL)
        self._maybe_die()
        if self.log and len(X) > 1:  # not the job's one-image check that the model reads the pool
            with open(self.log, "a") as fh:
                fh.write(f"{chunk}\n")
        return self.lr_.predict_proba(X.reshape(len(X), -1) / 16)


def fold_killer():
    """The clean job's ``module:test_cluster:fold_killer`` model: a FlatLogistic whose
    ``fold_poison`` is the file $PSEUDOLABEL_TEST_FOLD_POISON names."""
    return FlatLogistic(fold_poison=os.environ.get("PSEUDOLABEL_TEST_FOLD_POISON", ""), spare_pid=os.getpid())


@pytest.fixture(scope="module")
def cluster():
    # One retry: enough to show a killed worker's chunk or fold redone, and a worker that keeps
    # dying fails the job after two deaths instead of four.
    with Cluster("local", num_cpus=2, object_store_mb=150, retries=1) as c:
        yield c
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def digits_pool(tmp_path_factory, digits):
    """A memory-mapped pool of 1000 digit images whose first pixel holds the chunk number."""
    X = digits[0][:1000].copy()
    X[:, 0, 0] = np.arange(len(X)) // CHUNK
    path = tmp_path_factory.mktemp("pool") / "digits.npy"
    np.save(path, X)
    return path


def make_run(folder: Path, model) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    return folder


@pytest.fixture(scope="module")
def cnn(digits):
    """The package's own CNN, trained briefly: what a selftrain run saves."""
    from pseudolabel.models import ConvNetClassifier

    X, y = digits
    return ConvNetClassifier(arch="fast", epochs=1, min_steps=0, random_state=0).fit(X[1000:1300], y[1000:1300])


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    return FlatLogistic().fit(X[1000:], y[1000:])


def test_addresses_are_checked_before_ray_is_touched():
    assert check_address("local") == "local" and check_address("ray://head:10001") == "ray://head:10001"
    with pytest.raises(InputError, match="not a Ray address"):
        check_address("head-without-port")


def test_pool_scoring_on_ray_equals_the_local_path(cluster, digits_pool, cnn, tmp_path):
    run = make_run(tmp_path / "run", cnn)
    local = run_score({"run": str(run), "pool": str(digits_pool), "chunk_size": CHUNK, "proba": True},
                      tmp_path / "local.parquet", say=lambda m: None)
    remote = run_score({"run": str(run), "pool": str(digits_pool), "chunk_size": CHUNK, "proba": True},
                       tmp_path / "ray.parquet", say=lambda m: None, cluster=cluster)
    a, b = pd.read_parquet(local.path), pd.read_parquet(remote.path)
    assert len(a) == 1000 and list(a.columns) == list(b.columns)
    assert a["item"].tolist() == b["item"].tolist() == [f"digits/{i}" for i in range(1000)]
    assert a["label"].tolist() == b["label"].tolist()
    np.testing.assert_allclose(a["confidence"], b["confidence"], rtol=0, atol=1e-12)


def test_out_of_fold_folds_as_ray_tasks_equal_the_local_loop(cluster, digits):
    X, y = digits[0][:600], digits[1][:600]
    seen = []
    local = out_of_fold_proba(FlatLogistic(), X, y, cv=3, random_state=0)
    remote = out_of_fold_proba(FlatLogistic(), X, y, cv=3, random_state=0, executor=cluster.fold_executor(),
                               callback=lambda k, n, info: seen.append(k))
    np.testing.assert_allclose(local, remote, rtol=0, atol=1e-9)
    assert seen == [0, 1, 2]  # callbacks still see the folds in order


def test_a_fold_whose_worker_is_killed_is_retried(cluster, digits, tmp_path):
    X, y = digits[0][:600], digits[1][:600]
    flag = tmp_path / "killed.pid"
    remote = out_of_fold_proba(FlatLogistic(die_once=str(flag)), X, y, cv=3, random_state=0,
                               executor=cluster.fold_executor())
    assert flag.is_file() and int(flag.read_text()) != os.getpid()  # a worker died by SIGKILL ...
    np.testing.assert_allclose(remote, out_of_fold_proba(FlatLogistic(), X, y, cv=3, random_state=0),
                               rtol=0, atol=1e-9)  # ... and its fold was redone to the same result


def test_a_scoring_worker_killed_mid_job_is_restarted(cluster, digits_pool, fitted, tmp_path):
    flag = tmp_path / "killed.pid"
    model = FlatLogistic(die_once=str(flag), spare_pid=os.getpid())
    model.lr_, model.classes_ = fitted.lr_, fitted.classes_
    flag_free = make_run(tmp_path / "plain", fitted)
    run = make_run(tmp_path / "run", model)
    res = run_score({"run": str(run), "pool": str(digits_pool), "chunk_size": CHUNK}, tmp_path / "s.parquet",
                    say=lambda m: None, cluster=cluster)
    assert flag.is_file() and int(flag.read_text()) != os.getpid()
    ref = run_score({"run": str(flag_free), "pool": str(digits_pool), "chunk_size": CHUNK}, tmp_path / "r.parquet",
                    say=lambda m: None)
    assert pd.read_parquet(res.path)["label"].tolist() == pd.read_parquet(ref.path)["label"].tolist()


def test_a_worker_that_keeps_dying_stops_the_job_and_resume_keeps_finished_chunks(digits_pool, fitted, tmp_path,
                                                                               cluster):
    poison, log = tmp_path / "poison", tmp_path / "scored.log"
    model = FlatLogistic(poison=str(poison), poison_chunk=7, log=str(log), spare_pid=os.getpid())
    model.lr_, model.classes_ = fitted.lr_, fitted.classes_
    run = make_run(tmp_path / "run", model)
    poison.write_text("")
    out = tmp_path / "s.parquet"
    options = {"run": str(run), "pool": str(digits_pool), "chunk_size": CHUNK, "workers": 1}
    t0 = time.perf_counter()
    with pytest.raises(ClusterError, match="finished chunks are kept: run again with --resume"):
        run_score(options, out, say=lambda m: None, cluster=cluster)
    assert time.perf_counter() - t0 < 120
    folder = parts_dir(out)
    kept = {p.name: p.stat().st_mtime_ns for p in folder.glob("chunk-*.parquet")}
    assert "chunk-000007.parquet" not in kept and len(kept) >= 1
    assert not out.exists()
    poison.unlink()
    log.write_text("")
    res = run_score({**options, "workers": None}, out, resume=True, say=lambda m: None, cluster=cluster)
    again = sorted(int(v) for v in log.read_text().split())
    assert set(again) == set(range(10)) - {int(n[6:12]) for n in kept}  # only the missing chunks
    assert res.n_scored == 10 - len(kept)
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("chunk-*.parquet") if p.name in kept} == kept
    assert len(pd.read_parquet(out)) == 1000


def test_cli_score_on_ray_and_an_unreachable_cluster(digits_pool, fitted, tmp_path):
    run = make_run(tmp_path / "run", fitted)
    t0 = time.perf_counter()
    result = CliRunner().invoke(main, ["score", str(run), "--pool", str(digits_pool), "--out",
                                       str(tmp_path / "s.parquet"), "--cluster", "ray://127.0.0.1:9"])
    assert result.exit_code == 2 and time.perf_counter() - t0 < 15
    assert result.output.count("\n") == 1 and "cannot reach the Ray cluster at ray://127.0.0.1:9" in result.output
    assert not (tmp_path / "s.parquet.parts").exists()  # nothing written


def test_a_job_without_cluster_never_imports_ray(digits_pool, cnn, tmp_path):
    run = make_run(tmp_path / "run", cnn)
    code = ("import sys; from pseudolabel.cli import main; from pseudolabel.jobs.score import run_score; "
            "from pseudolabel.jobs.clean import run_clean; "
            "run_score({'run': %r, 'pool': %r, 'chunk_size': 500}, %r, say=lambda m: None); "
            "run_clean({**%r, 'folds': 2, 'epochs': 1, 'limit': 200}, %r, say=lambda m: None); "
            "assert 'ray' not in sys.modules, 'ray was imported'; print('ok')"
            % (str(run), str(digits_pool), str(tmp_path / "s.parquet"), CLEAN, str(tmp_path / "clean")))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"


def test_sweep_cells_run_as_ray_tasks(cluster, tmp_path):
    from pseudolabel.jobs.sweep import run_sweep

    config = {"data": "digits", "labeled": [60], "threshold": [0.5], "seeds": [0], "max_iter": 1, "epochs": 1,
              "recipe": "seed", "arch": "fast", "reference": False}
    result = run_sweep(config, tmp_path / "sweep", say=lambda m: None, report=False, cluster=cluster)
    assert [o.state for o in result.outcomes] == ["finished"] and result.outcomes[0].test_accuracy is not None
    log = (tmp_path / "sweep" / "logs" / f"{result.cells[0].name}.log").read_text()
    assert "in a worker with 1 torch thread(s)" in log  # it ran as a Ray task, not in this process
    again = run_sweep(config, tmp_path / "sweep", say=lambda m: None, report=False, cluster=cluster)
    assert [o.state for o in again.outcomes] == ["skipped"]  # finished cells are never redone


# -- the clean job's folds on Ray (pseudolabel clean --cluster) -------------------------------------
def fold_probas(run: Path, n_folds: int = 3) -> list:
    return [joblib.load(run / f"fold-{k}.joblib")["proba"] for k in range(n_folds)]


def test_clean_folds_on_ray_equal_the_local_run(cluster, tmp_path):
    from pseudolabel.jobs.clean import run_clean

    lines = []
    local = run_clean(CLEAN, tmp_path / "local", say=lambda m: None)
    remote = run_clean(CLEAN, tmp_path / "ray", say=lines.append, cluster=cluster)
    assert any("as Ray tasks on local" in line for line in lines)  # the folds went to Ray
    for a, b in zip(fold_probas(local.run.path), fold_probas(remote.run.path)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    a, b = pd.read_csv(local.run.path / "issues.csv"), pd.read_csv(remote.run.path / "issues.csv")
    assert a["item"].tolist() == b["item"].tolist() and a["is_issue"].tolist() == b["is_issue"].tolist()
    assert local.summary["n_flagged"] == remote.summary["n_flagged"]
    assert pd.read_csv(local.run.path / "labels.csv")["label"].tolist() == \
        pd.read_csv(remote.run.path / "labels.csv")["label"].tolist()


def test_clean_folds_finished_before_a_failure_are_kept_on_resume(cluster, tmp_path, monkeypatch):
    from pseudolabel.datasets import load_digits
    from pseudolabel.jobs.clean import run_clean
    from pseudolabel.jobs.clean_passes import fold_splits
    from pseudolabel.cluster import ClusterError

    ds = load_digits()
    config = {**CLEAN, "limit": None, "model_name": "module:test_cluster:fold_killer"}
    # The last fold's worker dies every time it trains (it holds out the marked image): folds 0
    # and 1 finish and are checkpointed, then the job stops after its retry.
    held_out = fold_splits(ds.y, 3, 0)[2][1]
    ds.X = ds.X.copy()
    ds.X[held_out[0], 0, 0] = MARK
    poison = tmp_path / "poison"
    poison.write_text("")
    monkeypatch.setenv("PSEUDOLABEL_TEST_FOLD_POISON", str(poison))
    out = tmp_path / "run"
    with pytest.raises(ClusterError, match="a fold failed on the Ray cluster after 1 retries .*again with --resume"):
        run_clean(config, out, say=lambda m: None, dataset=ds, cluster=cluster)
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("fold-*.joblib")}
    assert sorted(kept) == ["fold-0.joblib", "fold-1.joblib"]
    assert json.loads((out / "status.json").read_text())["state"] == "failed"
    poison.unlink()
    lines = []
    resumed = run_clean({}, out, resume=True, say=lines.append, dataset=ds, cluster=cluster)
    assert "fold 1/3: loaded from fold-0.joblib" in lines and "fold 2/3: loaded from fold-1.joblib" in lines
    assert any(line.startswith("training folds 3 of 3 as Ray tasks") for line in lines)  # only the missing one
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("fold-*.joblib") if p.name in kept} == kept
    local = run_clean({**config, "model_name": "module:test_cluster:FlatLogistic"}, tmp_path / "local",
                      say=lambda m: None, dataset=ds)
    for a, b in zip(fold_probas(local.run.path), fold_probas(resumed.run.path)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r.get("fold") for r in history if r["record"] == "fold"] == [0, 1, 2]


def test_cli_clean_with_an_unreachable_cluster_is_one_line_and_writes_nothing(tmp_path):
    t0 = time.perf_counter()
    result = CliRunner().invoke(main, ["clean", "--data", "digits", "--folds", "3", "--out", str(tmp_path / "run"),
                                       "--cluster", "ray://127.0.0.1:9"])
    assert result.exit_code == 2 and time.perf_counter() - t0 < 30
    assert result.output.count("\n") == 1 and "cannot reach the Ray cluster at ray://127.0.0.1:9" in result.output
    assert not (tmp_path / "run").exists()
    bad = CliRunner().invoke(main, ["clean", "--data", "digits", "--out", str(tmp_path / "run"), "--cluster", "head"])
    assert bad.exit_code == 2 and "is not a Ray address" in bad.output and not (tmp_path / "run").exists()


# -- joining an existing cluster: a real head node (ray start --head), Ray Client and its GCS port ------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_members(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (from /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


@pytest.fixture
def ray_head(tmp_path):
    """A head node as a user starts one (``ray start --head``: one CPU, a 100 MB object store,
    127.0.0.1, no dashboard, its own temp dir), with ``--block`` in a process group of its own:
    the teardown ends that group (the head, its raylet, GCS, client server and workers), only it,
    and checks nothing of it is left. ``ray stop`` is not used: it would stop every Ray on the machine."""
    pytest.importorskip("ray.util.client", reason="Ray Client is missing: pip install 'ray[client]'")
    pytest.importorskip("grpc", reason="Ray Client needs grpcio: pip install 'ray[client]'")
    gcs, client = _free_port(), _free_port()
    temp = Path(tempfile.mkdtemp(prefix="plray", dir="/tmp"))  # short: Ray's socket paths have a length limit
    log = open(tmp_path / "head.log", "wb")
    cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
           "--port", str(gcs), "--ray-client-server-port", str(client), "--num-cpus", "1",
           "--object-store-memory", "100000000", "--include-dashboard", "false", "--temp-dir", str(temp),
           "--disable-usage-stats"]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    head = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
            try:
                for port in (gcs, client):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the head node did not open its ports within 90 s"
                time.sleep(0.5)
        yield {"gcs": gcs, "client": client, "temp": temp}
    finally:
        # SIGTERM first (Ray's processes flush their logs); a blocked `ray start` rarely ends by it alone.
        for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
            try:
                os.killpg(head.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while _group_members(head.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if not _group_members(head.pid):
                break
        head.wait(timeout=10)
        log.close()
        left = _group_members(head.pid)
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"processes of the head node left running: {left}"


# Joins the head as the GCS address and as `auto` in one interpreter, one job after the other.
_JOIN_TWICE = """
import os, sys
from pseudolabel.jobs.score import run_score
run, pool, out, chunk, gcs = sys.argv[1:]
for name, address in (("gcs", gcs), ("auto", "auto")):
    if name == "auto":  # auto is told which cluster by RAY_ADDRESS: a shared machine may run several
        os.environ["RAY_ADDRESS"] = gcs
    run_score({"run": run, "pool": pool, "chunk_size": int(chunk), "proba": True, "cluster": address},
              os.path.join(out, name + ".parquet"), say=print)
"""


def test_scoring_on_a_joined_head_node_equals_the_local_path(ray_head, digits_pool, cnn, tmp_path):
    """`pseudolabel score --cluster ray://HOST:PORT` (Ray Client) in a fresh interpreter as a user
    runs it, then `HOST:PORT` (the head's GCS) and `auto`, against a head node: scores equal the
    local path's.

    The head runs with token authentication (Ray 2.60's default for `ray start`): to an address it
    is given (--cluster, or RAY_ADDRESS for `auto`) Ray sends the token (~/.ray/auth_token) only
    with RAY_AUTH_MODE=token. Without it, joining is one line that says so."""
    run = make_run(tmp_path / "run", cnn)
    options = {"run": str(run), "pool": str(digits_pool), "chunk_size": CHUNK, "proba": True}
    local = pd.read_parquet(run_score(options, tmp_path / "local.parquet", say=lambda m: None).path)
    plain = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    gcs, client = f"127.0.0.1:{ray_head['gcs']}", f"ray://127.0.0.1:{ray_head['client']}"
    probe = ("from pseudolabel.cluster import Cluster\ntry:\n    Cluster(%r, timeout_s=3).start()\n"
             "except Exception as exc:\n    print(type(exc).__name__, exc)" % gcs)
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=plain)
    assert proc.stdout.startswith("ClusterError ") and "RAY_AUTH_MODE=token" in proc.stdout, proc.stdout + proc.stderr

    token = {**plain, "RAY_AUTH_MODE": "token"}
    proc = subprocess.run([sys.executable, "-m", "pseudolabel.cli", "score", str(run), "--pool", str(digits_pool),
                           "--out", str(tmp_path / "client.parquet"), "--chunk-size", str(CHUNK), "--proba",
                           "--cluster", client], capture_output=True, text=True, timeout=240, env=token)
    assert proc.returncode == 0, f"{client}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    assert f"scored 1000 items ({1000 // CHUNK} of {1000 // CHUNK} chunks now)" in proc.stdout
    assert f"on Ray ({client})" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", _JOIN_TWICE, str(run), str(digits_pool), str(tmp_path), str(CHUNK),
                           gcs], capture_output=True, text=True, timeout=240, env=token)
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    assert f"on Ray ({gcs})" in proc.stdout and "on Ray (auto)" in proc.stdout

    p_cols = [c for c in local.columns if c.startswith("p_")]
    for name in ("client", "gcs", "auto"):
        remote = pd.read_parquet(tmp_path / f"{name}.parquet")
        assert remote["item"].tolist() == local["item"].tolist() and remote["label"].tolist() == local["label"].tolist()
        np.testing.assert_allclose(remote["confidence"], local["confidence"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(remote[p_cols].to_numpy(), local[p_cols].to_numpy(), rtol=0, atol=1e-7)
