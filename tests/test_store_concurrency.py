"""Several real writers on one label store at once: spawned processes writing through the public
API (the first ones creating the store together), the test process writing and reading, a
read-only handle reading, and real HTTP decisions posted to the review page served by another
process. Afterwards every event is there exactly once and the file checks out."""
from __future__ import annotations

import multiprocessing as mp
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest

from pseudolabel.store import LabelStore

# Part of the reliability suite (`make reliability`, docs/reliability.md); `make test` runs it too.
pytestmark = pytest.mark.reliability

N_ITEMS = 50
N_PROCS, PER_PROC = 3, 300
N_MAIN = 100
N_HTTP = 100


def _api_writer(path: str, name: str, n: int, ready, start) -> None:
    """Open (creating the store if no one has yet), then write ``n`` single-event transactions,
    each with a unique note, interleaved with reads."""
    ready.put(name)  # imports done: the writers start together when the test says so
    start.wait(60)
    s = LabelStore(path)
    s.add_items([f"item/{i}" for i in range(N_ITEMS)])  # idempotent: every writer may add them
    for i in range(n):
        s.add_labels([f"item/{(i * 7) % N_ITEMS}"], [i % 10], "human", who=name, note=f"{name}:{i}")
        if i % 50 == 0:
            s.current_labels(items=[f"item/{i % N_ITEMS}"])
    s.close()


def _start_writers(path, names, n):
    """Spawn the writers and wait until each has imported everything; setting the returned
    event lets them all write at once."""
    ctx = mp.get_context("spawn")
    ready, start = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_api_writer, args=(str(path), name, n, ready, start)) for name in names]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=60)
    except BaseException:
        for p in procs:
            p.kill()
        raise
    return procs, start


def _interleaved(path, names) -> None:
    """The writers really ran at once: some writers' events overlap in the log (which ones is up
    to the scheduler: on a busy 2-core machine one writer may well run alone for a while)."""
    with sqlite3.connect(path) as conn:
        span = {w: conn.execute("SELECT MIN(id), MAX(id) FROM events WHERE who = ?", (w,)).fetchone()
                for w in names}
    overlapping = [(a, b) for a in names for b in names
                   if a < b and span[a][0] < span[b][1] and span[b][0] < span[a][1]]
    assert overlapping, span


def _join(procs) -> None:
    for p in procs:
        p.join(90)
        if p.exitcode is None:
            p.kill()
            p.join(5)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def _notes(path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT note FROM events WHERE note LIKE '%:%' ORDER BY id")]


def _check_whole(path) -> None:
    s = LabelStore(path, create=False)
    try:
        s.verify()
        assert s.rows("SELECT COUNT(*) FROM events WHERE source <> 'human'") == [(0,)]
    finally:
        s.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_processes_and_the_main_process_write_at_once_and_lose_nothing(tmp_path):
    path = tmp_path / "labels.db"  # not there yet: the writers create it together
    names = [f"w{k}" for k in range(N_PROCS)]
    procs, start = _start_writers(path, names, PER_PROC)
    start.set()
    try:
        deadline = time.time() + 60
        while not path.exists() or path.stat().st_size == 0:
            assert time.time() < deadline, "no writer created the store"
            time.sleep(0.05)
        main = LabelStore(path)
        main.add_items([f"item/{i}" for i in range(N_ITEMS)])
        reader = LabelStore(path, readonly=True)
        seen = []
        for i in range(N_MAIN):
            main.add_labels([f"item/{i % N_ITEMS}"], [(i + 3) % 10], "human", who="main", note=f"main:{i}")
            if i % 10 == 0:
                seen.append(reader.rows("SELECT COUNT(*) FROM events")[0][0])
                cur = main.current_labels()
                assert len(cur) == N_ITEMS and cur["label"].between(-1, 9).all()
        assert seen == sorted(seen) and seen[-1] >= 91  # a read-only reader sees the log grow
        reader.close()
        main.close()
    finally:
        _join(procs)
    notes = _notes(path)
    expected = {f"{n}:{i}" for n in names for i in range(PER_PROC)} | {f"main:{i}" for i in range(N_MAIN)}
    assert len(notes) == len(expected) == N_PROCS * PER_PROC + N_MAIN
    assert set(notes) == expected  # every event, no duplicate
    for n in names:  # each writer's events in its own order
        mine = [int(x.split(":")[1]) for x in notes if x.startswith(n + ":")]
        assert mine == list(range(PER_PROC))
    _interleaved(path, names + ["main"])
    _check_whole(path)


def _serve(path) -> tuple[subprocess.Popen, str, str]:
    code = ("from pseudolabel.review import serve; "
            f"serve({str(path)!r}, None, port=0, token='tok-concurrency', who='web')")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("review page: "):
        proc.kill()
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"the review page did not start: {line} {err}")
    base = line.split(": ", 1)[1].split("/?")[0]
    deadline = time.time() + 30
    while True:
        try:
            httpx.get(base + "/api/summary", timeout=5)
            return proc, base, "tok-concurrency"
        except httpx.ConnectError:
            assert time.time() < deadline, "the review page never answered"
            time.sleep(0.1)


def test_http_decisions_and_api_writers_at_once_lose_nothing(tmp_path):
    path = tmp_path / "labels.db"
    s = LabelStore(path)
    s.set_classes([str(d) for d in range(10)])
    s.add_items([f"item/{i}" for i in range(N_ITEMS)])
    s.close()
    server, base, token = _serve(path)
    names = ["a0", "a1"]
    procs, start = _start_writers(path, names, PER_PROC)
    posted = []
    try:
        start.set()
        with httpx.Client(base_url=base, headers={"X-Review-Token": token}, timeout=60) as web:
            for j in range(N_HTTP):
                item_id, label = j % N_ITEMS + 1, (j * 3) % 10
                r = web.post("/api/decide", json={"item_id": item_id, "label": label})
                assert r.status_code == 200, r.text
                assert r.json()["item"]["source"] == "human"
                posted.append((item_id, label))
                if j % 25 == 0:
                    assert web.get("/api/queue", params={"queue": "all"}).status_code == 200
    finally:
        _join(procs)
        server.terminate()
        server.wait(20)
    with sqlite3.connect(path) as conn:
        web_events = conn.execute("SELECT item_id, label FROM events WHERE who = 'web' ORDER BY id").fetchall()
    assert web_events == posted  # every decision once, in the order posted
    notes = _notes(path)
    assert len(notes) == len(set(notes)) == len(names) * PER_PROC
    assert set(notes) == {f"{n}:{i}" for n in names for i in range(PER_PROC)}
    _interleaved(path, names + ["web"])
    _check_whole(path)
    s = LabelStore(path, create=False)
    assert len(s.events(source="human")) == N_HTTP + len(names) * PER_PROC
    s.close()
