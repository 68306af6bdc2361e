"""Joining an existing Ray cluster: a real head node (``ray start --head``) on 127.0.0.1, reached
through Ray Client (``ray://``), its GCS port (``HOST:PORT``) and ``auto``.

Apart from tests/test_cluster.py so that pytest-xdist (``--dist loadfile``) runs this slow test
(a head node's start, three fresh interpreters) beside the other Ray tests, not after them.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# The fixtures and helpers of the Ray tests (the module skips itself without Ray, and so this one).
from test_cluster import CHUNK, cnn, digits_pool, make_run  # noqa: F401  (cnn, digits_pool: fixtures)

from pseudolabel.jobs.score import run_score


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
