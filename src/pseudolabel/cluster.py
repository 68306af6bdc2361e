"""Jobs on a Ray cluster (``--cluster local | auto | ray://HOST:PORT``): pool scoring as Ray Data
``map_batches`` with the fitted model in actors, out-of-fold folds and sweep cells as Ray tasks.

Ray is an optional extra (``pip install 'pseudolabel[ray]'``) and imported here only, inside
functions, so a job without ``--cluster`` never loads it. ``local`` starts a private Ray runtime
on this machine (CPUs capped, a 200 MB object store, no dashboard, bound to 127.0.0.1) and shuts
it down when the job ends, failed or not; ``auto`` joins the cluster this machine belongs to
(``ray start`` ran here); ``ray://HOST:PORT`` joins a remote one through Ray Client. An address
that does not answer is one line within :data:`CONNECT_TIMEOUT_S`.

Faults: a worker process that dies (killed, out of memory) is restarted by Ray and its chunk or
fold retried, ``retries`` times (default :data:`RETRIES`); past that the job stops with one line,
and the chunks and folds finished so far stay on disk for ``--resume``.

Examples
--------
>>> with Cluster("local", num_cpus=2) as cluster:                          # doctest: +SKIP
...     for part in cluster.score_chunks(model, pool, pool.chunk_bounds(4096)):
...         print(part["chunk"], part["pred"][:5])
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import warnings
from typing import Any, Callable, Iterable, Iterator, Sequence
from urllib.parse import urlparse

import numpy as np

from pseudolabel.exceptions import InputError, PseudolabelError, one_line

__all__ = ["Cluster", "ClusterError", "check_address", "CONNECT_TIMEOUT_S", "RETRIES", "LOCAL_OBJECT_STORE_MB"]

CONNECT_TIMEOUT_S = 10.0
RETRIES = 3
LOCAL_OBJECT_STORE_MB = 200
_INSTALL = "pip install 'pseudolabel[ray]'"


class ClusterError(PseudolabelError):
    """The cluster cannot be reached, or its workers kept failing."""


def check_address(address) -> str:
    """``local``, ``auto``, ``ray://HOST:PORT`` or ``HOST:PORT`` (a head node's GCS), else one line."""
    text = str(address).strip()
    if text in ("local", "auto"):
        return text
    parsed = urlparse(text if "://" in text else f"gcs://{text}")
    if parsed.scheme in ("ray", "gcs") and parsed.hostname and parsed.port:
        return text
    raise InputError(f"--cluster {address!r} is not a Ray address; pass local, auto, ray://HOST:PORT "
                     "(Ray Client, port 10001 by default) or HOST:PORT (the head node, port 6379).")


def _import_ray():
    try:
        import ray  # the optional extra, loaded only for --cluster
        import ray.data  # noqa: F401  (map_batches for pool scoring)
    except ImportError:
        raise InputError(f"--cluster needs Ray; install it with {_INSTALL}.") from None
    return ray


def _reachable(address: str, timeout: float) -> None:
    """A TCP connect to the address's host and port, so a dead address fails in seconds, not
    after Ray's own minute of retries."""
    parsed = urlparse(address if "://" in address else f"gcs://{address}")
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address} ({one_line(exc)} within {timeout:.0f} s); "
                           "check that its head node runs ('ray start --head') and the port is open, or "
                           "pass --cluster local.") from None


def _init_within(ray, timeout: float, **kwargs) -> None:
    """``ray.init(**kwargs)``, given up after ``timeout`` seconds: something that accepts TCP on
    the port but is not Ray (a proxy, another server) would otherwise be retried for a minute."""
    box: dict = {}

    def connect():
        try:
            ray.init(**kwargs)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=connect, name="ray-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ClusterError(f"{kwargs.get('address')} accepted a connection but did not answer as a Ray cluster "
                           f"within {timeout:.0f} s; check the address and port (ray:// for Ray Client, port "
                           "10001; HOST:PORT for the head node, port 6379).")
    if "error" in box:
        raise box["error"]


class Cluster:
    """A connection to Ray for one job: started (``local``) or joined, and closed at the end.

    Parameters
    ----------
    address : str
        ``local``, ``auto``, ``ray://HOST:PORT`` or ``HOST:PORT``.
    num_cpus : int, optional
        CPUs of a ``local`` runtime (default: this machine's, at most); ignored when joining.
    object_store_mb : int, default 200
        The object store of a ``local`` runtime: small, since chunks are read by the workers
        themselves and only scores travel back.
    retries : int, default 3
        How often a chunk or fold whose worker died is retried before the job stops.
    timeout_s : float, default 10
        How long an address may take to answer.
    """

    def __init__(self, address: str = "local", *, num_cpus: int | None = None,
                 object_store_mb: int = LOCAL_OBJECT_STORE_MB, retries: int = RETRIES,
                 timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.address = check_address(address)
        self.num_cpus, self.object_store_mb = num_cpus, object_store_mb
        self.retries, self.timeout_s = retries, timeout_s
        self._ray = None
        self._puts: dict[int, Any] = {}

    # -- connecting ---------------------------------------------------------------------------
    def start(self) -> "Cluster":
        ray = _import_ray()
        if self.address not in ("local", "auto"):  # a dead address is the first thing to say
            _reachable(self.address, self.timeout_s)
        if ray.is_initialized():
            raise ClusterError("Ray is already initialized in this process; pass that cluster's Cluster "
                               "object to the job, or shut the other runtime down first.")
        quiet = dict(log_to_driver=False, logging_level="warning", configure_logging=True)
        try:
            if self.address == "local":
                cpus = min(int(self.num_cpus or os.cpu_count() or 1), os.cpu_count() or 1)
                ray.init(num_cpus=cpus, object_store_memory=int(self.object_store_mb) * 1024 ** 2,
                         include_dashboard=False, _node_ip_address="127.0.0.1", **quiet)
            elif self.address == "auto":
                _init_within(ray, self.timeout_s, address="auto", **quiet)
            else:
                _init_within(ray, self.timeout_s, address=self.address, **quiet)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
            ray.shutdown()
            raise ClusterError(f"cannot join the Ray cluster {self.address!r} ({one_line(exc)[:200]}); start one "
                               "with 'ray start --head' or pass --cluster local.") from None
        self._ray = ray
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # no line per dataset executed
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        return self

    def stop(self) -> None:
        """Disconnect; a ``local`` runtime is shut down with its workers."""
        if self._ray is not None:
            self._puts.clear()
            self._ray.shutdown()
            self._ray = None

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def ray(self):
        if self._ray is None:
            raise ClusterError("the cluster is not started; use it as 'with Cluster(...) as cluster:'.")
        return self._ray

    def resources(self) -> dict:
        """The cluster's total resources (CPU, GPU, memory, ...)."""
        return dict(self.ray.cluster_resources())

    @property
    def n_gpus(self) -> int:
        return int(self.resources().get("GPU", 0))

    @property
    def n_cpus(self) -> int:
        return max(1, int(self.resources().get("CPU", 1)))

    # -- tasks (folds, sweep cells) -----------------------------------------------------------
    def _put(self, value):
        """Large arrays go into the object store once, however many tasks read them."""
        if isinstance(value, np.ndarray) and value.nbytes > 1 << 20:
            ref = self._puts.get(id(value))
            if ref is None or ref[0] is not value:
                ref = self._puts[id(value)] = (value, self.ray.put(value))
            return ref[1]
        return value

    def map_tasks(self, fn: Callable, arglists: Iterable[Sequence], *, ordered: bool = True,
                  num_cpus: float = 1, what: str = "task") -> Iterator:
        """``fn(*args)`` for each of ``arglists`` as Ray tasks, results in order (or as they finish
        with ``ordered=False``). A task whose worker dies is retried ``retries`` times; past that,
        one ClusterError line."""
        ray = self.ray
        remote = ray.remote(max_retries=self.retries, num_cpus=num_cpus)(fn)
        arglists = [list(args) for args in arglists]
        seen: dict[int, int] = {}
        for args in arglists:
            for a in args:
                seen[id(a)] = seen.get(id(a), 0) + 1
        shared = {}  # what several tasks read (the data set, X) goes into the object store once
        for args in arglists:
            for a in args:
                if seen[id(a)] > 1 and not isinstance(a, (str, bytes, int, float, bool, type(None))):
                    shared.setdefault(id(a), (a, ray.put(a)))
        refs = [remote.remote(*[shared[id(a)][1] if id(a) in shared else self._put(a) for a in args])
                for args in arglists]
        pending = list(refs)
        try:
            if ordered:
                for ref in refs:
                    yield ray.get(ref)
            else:
                while pending:
                    ready, pending = ray.wait(pending, num_returns=1)
                    yield ray.get(ready[0])
        except ray.exceptions.RayTaskError as exc:  # the task's own exception: as if local
            cause = exc.as_instanceof_cause()
            if isinstance(cause, PseudolabelError):
                raise type(cause)(str(cause).split("\n")[-1] or str(cause)) from None
            raise ClusterError(f"a {what} failed on the Ray cluster: {one_line(cause)[-300:]}") from None
        except ray.exceptions.RayError as exc:
            raise ClusterError(f"a {what} failed on the Ray cluster after {self.retries} retries "
                               f"({type(exc).__name__}: {one_line(exc)[:200]}); what finished is kept: run "
                               "again with --resume.") from None
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def fold_executor(self) -> Callable:
        """The ``executor`` of :func:`pseudolabel.crossval.out_of_fold_proba`: folds as Ray tasks."""
        def run(fn, arglists):
            return self.map_tasks(fn, arglists, ordered=True, what="fold")
        return run

    # -- scoring a pool ----------------------------------------------------------------------
    def score_chunks(self, model, pool, bounds: Sequence[tuple[int, int, int]], *, with_proba: bool = True,
                     concurrency: int | None = None) -> Iterator[dict]:
        """Score the chunks ``bounds`` ((index, start, stop), see ``Pool.chunk_bounds``) of
        ``pool`` with ``model`` in a pool of Ray Data actors (``map_batches``), each holding the
        model and reading its chunks itself: only the scores travel. Yields, per chunk as it
        finishes, ``{"chunk", "start", "pred", "conf", "proba"}`` (``pred``: column of
        ``model.classes_``). One actor per GPU when the cluster has GPUs, else one per CPU."""
        if not bounds:
            return
        ray = self.ray
        gpus = self.n_gpus
        workers = concurrency or (gpus if gpus else self.n_cpus)
        workers = max(1, min(int(workers), len(bounds)))
        items = [{"chunk": int(k), "start": int(s), "stop": int(e)} for k, s, e in bounds]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        with warnings.catch_warnings():  # max_restarts has no named parameter yet (Ray 2.60)
            warnings.simplefilter("ignore")
            scored = ds.map_batches(
                _ScoreActor, batch_size=1, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=1, num_gpus=1 if gpus else 0,
                fn_constructor_kwargs={"model": model, "pool": pool, "with_proba": with_proba},
                max_restarts=self.retries, max_task_retries=self.retries)
        wanted = {int(k): int(e) - int(s) for k, s, e in bounds}
        starts = {int(k): int(s) for k, s, _ in bounds}
        parts: dict[int, list] = {}
        try:
            for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
                chunk_of = np.asarray(batch["chunk"])
                for k in np.unique(chunk_of).tolist():
                    mine = chunk_of == k
                    parts.setdefault(k, []).append({key: np.asarray(batch[key])[mine]
                                                    for key in ("row", "pred", "conf", "proba")})
                    if sum(len(p["row"]) for p in parts[k]) < wanted[k]:
                        continue
                    pieces = parts.pop(k)
                    got = {key: np.concatenate([p[key] for p in pieces]) for key in ("row", "pred", "conf", "proba")}
                    order = np.argsort(got["row"], kind="stable")
                    yield {"chunk": k, "start": starts[k], "pred": got["pred"][order].astype(np.int64),
                           "conf": got["conf"][order].astype(np.float64),
                           "proba": got["proba"][order] if with_proba else None}
        except PseudolabelError:
            raise
        except Exception as exc:
            raise ClusterError(f"scoring failed on the Ray cluster ({type(exc).__name__}: {one_line(exc)[:240]}); "
                               "finished chunks are kept: run again with --resume.") from None


class _ScoreActor:
    """One Ray Data actor: the model loaded once, then chunk after chunk read from the pool."""

    def __init__(self, model, pool, with_proba: bool) -> None:
        threads = int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
        if type(model).__module__.startswith("pseudolabel.models"):
            import torch  # torch is loaded lazily, only for the CNN

            torch.set_num_threads(max(1, threads))
        self.model, self.pool, self.with_proba = model, pool, with_proba

    def __call__(self, batch: dict) -> dict:
        k, start, stop = (int(batch[c][0]) for c in ("chunk", "start", "stop"))
        proba = np.asarray(self.model.predict_proba(self.pool.read(start, stop)), dtype=np.float64)
        n = len(proba)
        return {"chunk": np.full(n, k, dtype=np.int64), "row": np.arange(start, stop, dtype=np.int64),
                "pred": proba.argmax(axis=1).astype(np.int64), "conf": proba.max(axis=1),
                "proba": proba.astype(np.float32) if self.with_proba else np.zeros((n, 1), np.float32)}
