"""Jobs on a Ray cluster (``--cluster local | auto | ray://HOST:PORT``): pool scoring as Ray Data
``map_batches`` with the fitted model in actors, out-of-fold folds and sweep cells as Ray tasks.

Ray is an optional extra (``pip install 'pseudolabel[ray]'``) and imported here only, inside
functions, so a job without ``--cluster`` never loads it. ``local`` starts a private Ray runtime
on this machine (CPUs capped, a 200 MB object store, no dashboard, bound to 127.0.0.1) and shuts
it down when the job ends, failed or not; ``auto`` joins the cluster this machine belongs to
(``ray start`` ran here); ``ray://HOST:PORT`` joins a remote one through Ray Client. An address
that does not answer is one line within :data:`CONNECT_TIMEOUT_S` (a ``ray://`` one:
:data:`CLIENT_CONNECT_TIMEOUT_S`).

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

__all__ = ["Cluster", "ClusterError", "check_address", "CONNECT_TIMEOUT_S", "CLIENT_CONNECT_TIMEOUT_S", "RETRIES",
           "LOCAL_OBJECT_STORE_MB"]

CONNECT_TIMEOUT_S = 10.0
# Ray Client's proxy starts a server process for each driver before it answers: 2-3 s on an idle
# 2-core machine, over 10 s on a loaded one, and once over 40 s while a test suite ran beside it.
CLIENT_CONNECT_TIMEOUT_S = 90.0
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


def _auth_hint(address: str) -> str:
    """What to try when a cluster does not answer: Ray 2.60 starts clusters with token
    authentication and, for an explicit address, sends its token only with RAY_AUTH_MODE=token
    (it never sends a token to an address it was not told to trust; neither does this module)."""
    if address in ("local", "auto") or os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return ""
    return ("; a cluster started with token authentication (Ray 2.60's default) answers only when "
            "RAY_AUTH_MODE=token is set here, with its token in RAY_AUTH_TOKEN or ~/.ray/auth_token")


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
                           f"10001; HOST:PORT for the head node, port 6379){_auth_hint(kwargs.get('address'))}.")
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
    timeout_s : float, optional
        How long an address may take to answer (default 10 s; 90 s for ``ray://``, whose proxy
        starts a server process per driver).
    """

    def __init__(self, address: str = "local", *, num_cpus: int | None = None,
                 object_store_mb: int = LOCAL_OBJECT_STORE_MB, retries: int = RETRIES,
                 timeout_s: float | None = None) -> None:
        self.address = check_address(address)
        self.num_cpus, self.object_store_mb = num_cpus, object_store_mb
        self.retries, self.timeout_s = retries, timeout_s
        self._ray = None
        self._puts: dict[int, Any] = {}

    # -- connecting ---------------------------------------------------------------------------
    def start(self) -> "Cluster":
        ray = _import_ray()
        if self.address not in ("local", "auto"):  # a dead address is the first thing to say
            _reachable(self.address, self.timeout_s or CONNECT_TIMEOUT_S)
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
                _init_within(ray, self.timeout_s or CONNECT_TIMEOUT_S, address="auto", **quiet)
            else:
                wait = self.timeout_s or (CLIENT_CONNECT_TIMEOUT_S if self.address.startswith("ray://")
                                          else CONNECT_TIMEOUT_S)
                _init_within(ray, wait, address=self.address, **quiet)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
            ray.shutdown()
            raise ClusterError(f"cannot join the Ray cluster {self.address!r} ({one_line(exc)[:200]}); start one "
                               f"with 'ray start --head' or pass --cluster local{_auth_hint(self.address)}.") from None
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
        # Only refs not yet returned are cancelled when the caller stops early (an error, a closed
        # generator): Ray 2.60 aborts the driver when a finished task is force-cancelled while its
        # reply is handled ("Check failed: it != submissible_tasks_.end()").
        pending = list(refs)
        try:
            if ordered:
                for ref in refs:
                    result = ray.get(ref)
                    pending.remove(ref)
                    yield result
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
        ``model.classes_``). One actor per GPU when the cluster has GPUs, else one per CPU.

        Through Ray Client (``ray://``) the same actors are plain Ray actors fed one chunk at a
        time: Ray Data runs its executor in the driver, which needs to be a cluster worker there
        (Ray 2.60 over Ray Client: "'Worker' object has no attribute 'core_worker'")."""
        if not bounds:
            return
        gpus = self.n_gpus
        workers = concurrency or (gpus if gpus else self.n_cpus)
        workers = max(1, min(int(workers), len(bounds)))
        from ray.util.client import ray as client  # Ray: only for --cluster

        by = self._batches_by_actors if client.is_connected() else self._batches_by_ray_data
        wanted = {int(k): int(e) - int(s) for k, s, e in bounds}
        starts = {int(k): int(s) for k, s, _ in bounds}
        parts: dict[int, list] = {}
        try:
            for batch in by(model, pool, bounds, with_proba, workers, gpus):
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

    def _batches_by_ray_data(self, model, pool, bounds, with_proba: bool, workers: int, gpus: int) -> Iterator[dict]:
        """Ray Data ``map_batches`` over the chunk list, with an actor pool: batches as they come."""
        ray = self.ray
        items = [{"chunk": int(k), "start": int(s), "stop": int(e)} for k, s, e in bounds]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        with warnings.catch_warnings():  # max_restarts has no named parameter yet (Ray 2.60)
            warnings.simplefilter("ignore")
            scored = ds.map_batches(
                _ScoreActor, batch_size=1, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=1, num_gpus=1 if gpus else 0,
                fn_constructor_kwargs={"model": model, "pool": pool, "with_proba": with_proba},
                max_restarts=self.retries, max_task_retries=self.retries)
        yield from scored.iter_batches(batch_size=None, batch_format="numpy")

    def _batches_by_actors(self, model, pool, bounds, with_proba: bool, workers: int, gpus: int) -> Iterator[dict]:
        """``workers`` plain Ray actors (restarted and their chunk retried ``retries`` times), one
        chunk per call, batches as they finish; the actors are ended at the end."""
        from ray.util import ActorPool  # Ray: only for --cluster

        ray = self.ray
        remote = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0, max_restarts=self.retries,
                            max_task_retries=self.retries)(_ScoreActor)
        model_ref = ray.put(model)  # sent once, however many actors
        actors = [remote.remote(model_ref, pool, with_proba) for _ in range(workers)]
        items = [{"chunk": np.array([k]), "start": np.array([s]), "stop": np.array([e])} for k, s, e in bounds]
        try:
            yield from ActorPool(actors).map_unordered(lambda actor, item: actor.score.remote(item), items)
        finally:
            for actor in actors:
                ray.kill(actor)


class _ScoreActor:
    """One scoring actor (Ray Data's, or a plain one through Ray Client): the model loaded once,
    then chunk after chunk read from the pool."""

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

    def score(self, batch: dict) -> dict:
        """The plain actor's method (Ray Client): the same as calling it."""
        return self(batch)
