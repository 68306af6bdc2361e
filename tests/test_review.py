"""The review page over HTTP, in-process (Starlette's TestClient): Host check, token, images
only of the store's items, decisions written as human events, and `serve` in a subprocess."""
from __future__ import annotations

import io
import socket
import sqlite3
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from pseudolabel.exceptions import DataError, InputError, StoreError
from pseudolabel.review import create_app
from pseudolabel.review.app import _bind, allowed_hosts_for
from pseudolabel.review.images import ArrayImages, render_png
from pseudolabel.store import LabelStore

PORT = 8765
TOKEN = "test-token-123"
BASE = f"http://127.0.0.1:{PORT}"


@pytest.fixture
def db(tmp_path, mnist_small):
    """A store of 40 MNIST images (npz), 30 given labels, 3 suggestions, 10 predictions."""
    x, y = mnist_small[0][:40], mnist_small[1][:40]
    np.savez(tmp_path / "images.npz", x_train=x)
    s = LabelStore(tmp_path / "labels.db")
    s.set_classes([str(d) for d in range(10)])
    keys = [f"train/{i}" for i in range(40)]
    s.add_items(keys, [f"x_train:{i}" for i in range(40)])
    s.add_labels(keys[:30], y[:30], "given")
    s.record_suggestions(keys[:3], y[:3], (y[:3] + 1) % 10, [0.9, 0.8, 0.7], "clean-1")
    proba = np.full((10, 10), 0.05)
    proba[np.arange(10), y[30:]] = 0.55
    s.record_predictions(keys[30:], proba, "st-1")
    s.close()
    return tmp_path / "labels.db"


@pytest.fixture
def client(db):
    app = create_app(db, db.parent / "images.npz", token=TOKEN, port=PORT, who="tester")
    with TestClient(app, base_url=BASE) as c:
        yield c


def human_events(db):
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT i.key, e.label, e.who, e.note FROM events e JOIN items i ON i.id = e.item_id "
                            "WHERE e.source = 'human' ORDER BY e.id").fetchall()


@pytest.mark.parametrize("host", ["testserver", "evil.example:8765", "127.0.0.1:9999", "localhost", ""])
def test_requests_for_another_host_are_refused(db, host):
    app = create_app(db, None, token=TOKEN, port=PORT)
    with TestClient(app, base_url=BASE) as c:
        r = c.get("/", headers={"Host": host})
    assert r.status_code == 400 and "not this review server" in r.text


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "LOCALHOST:8765", "[::1]:8765"])
def test_loopback_names_of_the_bound_port_are_served(db, host):
    app = create_app(db, None, token=TOKEN, port=PORT)
    with TestClient(app, base_url=BASE) as c:
        r = c.get("/", headers={"Host": host})
    assert r.status_code == 200 and "pseudolabel review" in r.text
    assert allowed_hosts_for("0.0.0.0", PORT) is None
    assert allowed_hosts_for("192.168.1.5", PORT) == {"192.168.1.5:8765"}


def test_writes_need_the_token(client, db):
    body = {"item_id": 1, "label": 4, "action": "set"}
    assert client.post("/api/decide", json=body).status_code == 403
    assert client.post("/api/decide", json=body, headers={"X-Review-Token": "wrong"}).status_code == 403
    assert client.post("/api/decide", json={**body, "token": "wrong"}).status_code == 403
    assert client.post("/api/undo").status_code == 403
    assert human_events(db) == []
    assert client.post("/api/decide", json=body, headers={"X-Review-Token": TOKEN}).status_code == 200
    form = client.post("/api/decide", data={"item_id": "2", "label": "5", "token": TOKEN})
    assert form.status_code == 200
    assert human_events(db) == [("train/0", 4, "tester", "set"), ("train/1", 5, "tester", "set")]


def test_images_only_of_the_stores_items(client):
    r = client.get("/image/1")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert img.size == (112, 112)  # 28 x 28 upscaled 4x, nearest
    for path in ["/image/../../etc/passwd", "/image/..%2F..%2Fetc%2Fpasswd", "/image/%2Fetc%2Fpasswd",
                 "/image/999", "/image/1.png/../../etc/passwd", "/static/../../etc/passwd"]:
        r = client.get(path)
        assert r.status_code == 404, path
        assert b"root:" not in r.content


def test_folder_images_refuse_locations_outside_the_root(tmp_path):
    root = tmp_path / "photos"
    (root / "cat").mkdir(parents=True)
    Image.new("RGB", (300, 200), "red").save(root / "cat" / "a.png")
    Image.new("RGB", (10, 10), "blue").save(tmp_path / "secret.png")
    s = LabelStore(tmp_path / "labels.db")
    s.add_items(["cat/a.png", "evil", "gone"], ["cat/a.png", "../secret.png", "cat/missing.png"])
    s.set_meta("images", str(root))  # the page finds the images without --images
    app = create_app(s, None, token=TOKEN, port=PORT)
    with TestClient(app, base_url=BASE) as c:
        ok = c.get("/image/1")
        assert ok.status_code == 200 and max(Image.open(io.BytesIO(ok.content)).size) == 192
        evil = c.get("/image/2")
        assert evil.status_code == 404 and "outside the image folder" in evil.text
        gone = c.get("/image/3")
        assert gone.status_code == 404 and "no longer exists" in gone.text


def test_decisions_are_human_events_and_undo_reverts(client, db):
    h = {"X-Review-Token": TOKEN}
    q = client.get("/api/queue", params={"queue": "suspects"}).json()
    assert q["total"] == 3 and q["reviewed"] == 0 and q["items"][0]["key"] == "train/0"
    first = q["items"][0]
    r = client.post("/api/decide", json={"item_id": first["item_id"], "label": first["suggestion"],
                                         "action": "accept"}, headers=h)
    assert r.json()["item"]["label"] == first["suggestion"] and r.json()["item"]["source"] == "human"
    r = client.post("/api/decide", json={"item_id": 2, "action": "keep"}, headers=h)
    assert r.status_code == 200 and r.json()["item"]["label"] == q["items"][1]["label"]
    q2 = client.get("/api/queue", params={"queue": "suspects"}).json()
    assert q2["reviewed"] == 2 and [i["reviewed"] for i in q2["items"]] == [True, True, False]
    undone = client.post("/api/undo", headers=h).json()
    assert undone["undone"]["key"] == "train/1" and undone["item"]["source"] == "given"
    assert client.get("/api/queue", params={"queue": "suspects"}).json()["reviewed"] == 1
    hist = client.get("/api/history/2").json()["events"]
    assert [e["status"] for e in hist] == ["current", "undone", "undo"]
    assert [e[3] for e in human_events(db)] == ["accept", "keep"]


def test_bad_decisions_are_clear_errors(client, db):
    h = {"X-Review-Token": TOKEN}
    r = client.post("/api/decide", json={"item_id": 1, "label": 12}, headers=h)
    assert r.status_code == 400 and "outside the known classes" in r.json()["error"]
    r = client.post("/api/decide", json={"item_id": 999, "label": 1}, headers=h)
    assert r.status_code == 404
    r = client.post("/api/decide", json={"item_id": 35, "action": "keep"}, headers=h)
    assert r.status_code == 400 and "no label to keep" in r.json()["error"]
    r = client.post("/api/decide", content=b"{not json", headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 400
    assert client.get("/api/queue", params={"queue": "nope"}).status_code == 400
    assert human_events(db) == []
    assert client.post("/api/undo", headers=h).json()["undone"] is None


def test_summary_queues_and_class_filter(client):
    info = client.get("/api/summary").json()
    assert info["classes"] == [str(d) for d in range(10)]
    assert info["queues"] == {"suspects": 3, "audit": 0, "active": 10, "all": 40}
    assert info["default_queue"] == "suspects"
    active = client.get("/api/queue", params={"queue": "active", "limit": 4}).json()
    assert active["total"] == 10 and len(active["items"]) == 4
    more = client.get("/api/queue", params={"queue": "active", "offset": 4, "limit": 100}).json()
    assert len(more["items"]) == 6
    cls = active["items"][0]["suggestion"]
    only = client.get("/api/queue", params={"queue": "all", "cls": cls}).json()
    assert only["total"] >= 1 and all(
        (i["label"] if i["label"] >= 0 else i["suggestion"]) == cls for i in only["items"])
    empty = client.get("/api/queue", params={"queue": "audit"}).json()
    assert empty["items"] == [] and "selftrain" in empty["hint"]


def test_bad_stores_and_images_are_refused(tmp_path, db):
    with pytest.raises(StoreError, match="no label store"):
        create_app(tmp_path / "missing.db", None, token=TOKEN)
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"garbage" * 100)
    with pytest.raises(StoreError, match="bad.db"):
        create_app(bad, None, token=TOKEN)
    assert bad.read_bytes() == b"garbage" * 100
    with pytest.raises(DataError, match="no image array file at"):
        create_app(db, tmp_path / "nowhere.npz", token=TOKEN)
    with pytest.raises(InputError, match="token"):
        create_app(db, None, token="")
    with pytest.raises(DataError, match="has no array 'x_test'"):
        ArrayImages(db.parent / "images.npz").png("x_test:0")
    assert render_png(np.ones((8, 8), np.float32) * 16)[:4] == b"\x89PNG"


def test_port_in_use_is_a_clear_error():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        with pytest.raises(InputError, match="cannot listen on 127.0.0.1"):
            _bind("127.0.0.1", busy.getsockname()[1])
    finally:
        busy.close()


def test_serve_prints_a_url_with_the_token(db):
    code = ("import sys; from pseudolabel.review import serve; "
            f"serve({str(db)!r}, images={str(db.parent / 'images.npz')!r}, port=0)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("review page: http://127.0.0.1:") and "/?token=" in line, line
        url = line.split(": ", 1)[1]
        token = url.split("token=", 1)[1]
        deadline = time.time() + 30
        while True:
            try:
                r = httpx.get(url, timeout=5)
                break
            except httpx.ConnectError:
                assert time.time() < deadline
                time.sleep(0.2)
        assert r.status_code == 200
        base = url.split("/?")[0]
        ok = httpx.post(base + "/api/decide", json={"item_id": 33, "label": 2},
                        headers={"X-Review-Token": token}, timeout=10)
        assert ok.status_code == 200
    finally:
        proc.terminate()
        proc.wait(20)
    assert human_events(db) == [("train/32", 2, human_events(db)[0][2], "set")]


def decide(client, item_id, label, who):
    return client.post("/api/decide", json={"item_id": item_id, "label": label, "who": who},
                       headers={"X-Review-Token": TOKEN})


@pytest.mark.parametrize("who", ["", "x" * 41, "<b>ana</b>", "ana&bo", 'a"b', "a'b", "a`b", "a\\b", "a\nb",
                                 "tab\there", " ana", "ana ", "zero\u200bwidth", 5, True, None])
def test_reviewer_names_are_checked(client, db, who):
    r = client.post("/api/decide", json={"item_id": 1, "label": 4, "who": who}, headers={"X-Review-Token": TOKEN})
    assert r.status_code == 400 and "who must" in r.json()["error"], r.text
    assert client.post("/api/undo", json={"who": who}, headers={"X-Review-Token": TOKEN}).status_code == 400
    assert human_events(db) == []


def test_reviewer_names_are_recorded(client, db):
    assert decide(client, 1, 4, "Ana María").status_code == 200
    assert decide(client, 2, 5, "x" * 40).status_code == 200
    form = client.post("/api/decide", data={"item_id": "3", "label": "6", "token": TOKEN, "who": "bo"})
    assert form.status_code == 200 and form.json()["item"]["who"] == "bo"
    assert [e[2] for e in human_events(db)] == ["Ana María", "x" * 40, "bo"]


def test_undo_takes_back_only_the_reviewers_own_decision(client, db):
    h = {"X-Review-Token": TOKEN}
    for item, label, who in [(1, 1, "ana"), (2, 2, "bo"), (3, 3, "ana"), (4, 4, "bo"), (5, 5, "ana")]:
        assert decide(client, item, label, who).status_code == 200
    undo = lambda who: client.post("/api/undo", json={"who": who}, headers=h).json()["undone"]  # noqa: E731
    assert undo("ana")["item_id"] == 5
    assert undo("ana")["item_id"] == 3
    # bo's latest decision (item 4) was made after ana's on item 3: still there.
    with LabelStore(db, create=False) as s:
        assert s.events(source="human")[["item_id", "who"]].values.tolist() == [[1, "ana"], [2, "bo"], [4, "bo"]]
    assert undo("bo")["item_id"] == 4
    assert undo("ana")["item_id"] == 1
    assert undo("ana") is None
    assert undo("carol") is None
    with LabelStore(db, create=False) as s:
        assert s.events(source="human")[["item_id", "who"]].values.tolist() == [[2, "bo"]]
        assert s.events(source="human")["who"].tolist() == ["bo"]


def test_reviewers_summary_counts_and_agreement(client, db):
    assert client.get("/api/reviewers").json() == {"reviewers": [], "pairs": [], "decisions": 0}
    # ana: items 1, 2, 3 (given labels) and 35 (unlabeled); bo: 2, 3, 4; bo changes his mind on 3.
    for item, label, who in [(1, 1, "ana"), (2, 2, "ana"), (3, 3, "ana"), (35, 7, "ana"),
                             (2, 2, "bo"), (3, 9, "bo"), (4, 4, "bo"), (3, 3, "bo"), (36, 1, "bo")]:
        assert decide(client, item, label, who).status_code == 200
    # An undone decision counts for nobody: carol's only one.
    assert decide(client, 5, 5, "carol").status_code == 200
    client.post("/api/undo", json={"who": "carol"}, headers={"X-Review-Token": TOKEN})
    r = client.get("/api/reviewers").json()
    people = {p["who"]: p for p in r["reviewers"]}
    assert set(people) == {"ana", "bo"} and r["decisions"] == 9
    assert people["ana"]["decisions"] == 4 and people["ana"]["items"] == 4
    assert people["ana"]["by_source"] == {"given": 3, "none": 1}
    assert people["bo"]["decisions"] == 5 and people["bo"]["items"] == 4
    assert people["bo"]["by_source"] == {"given": 4, "none": 1}
    # Shared: 2 (both 2), 3 (ana 3, bo's latest 3) -> agree on both; add a disagreement on 1.
    assert r["pairs"] == [{"a": "ana", "b": "bo", "shared": 2, "agree": 2, "agreement": 1.0}]
    assert decide(client, 1, 8, "bo").status_code == 200
    pair = client.get("/api/reviewers").json()["pairs"][0]
    assert (pair["shared"], pair["agree"], pair["agreement"]) == (3, 2, pytest.approx(2 / 3))


def test_cards_carry_given_suggested_and_current(db, mnist_small):
    """After a relabel by `clean`, a suspect's row still says what the data came with, the one
    confidence of the suggestion, and where the current label comes from."""
    y = mnist_small[1]
    with LabelStore(db, create=False) as s:
        # clean --policy relabel: a corrected event with its own (different) confidence.
        s.add_labels(["train/0"], [(y[0] + 1) % 10], "corrected", confidence=0.662, run_id="clean-2")
        s.record_suggestions([f"train/{i}" for i in range(3)], y[:3], (y[:3] + 1) % 10, [0.9, 0.8, 0.7],
                             "clean-2", confidence=[0.98, 0.97, 0.96])
        s.add_labels(["train/35"], [3], "pseudo", confidence=0.99, round=2, run_id="st-2")
    app = create_app(db, db.parent / "images.npz", token=TOKEN, port=PORT, who="tester")
    with TestClient(app, base_url=BASE) as c:
        items = {i["key"]: i for i in c.get("/api/queue", params={"queue": "suspects"}).json()["items"]}
        first = items["train/0"]
        assert first["given"] == y[0] and first["suggestion"] == (y[0] + 1) % 10 != first["given"]
        assert first["label"] == first["suggestion"] and first["source"] == "corrected"
        assert first["confidence"] == pytest.approx(0.98)  # the suggestion's, not the event's 0.662
        assert first["suggestion_run"] == "clean-2"
        assert items["train/1"]["given"] == y[1] and items["train/1"]["source"] == "given"
        pseudo = c.get("/api/queue", params={"queue": "all", "offset": 35, "limit": 1}).json()["items"][0]
        assert (pseudo["key"], pseudo["given"], pseudo["source"], pseudo["round"]) == ("train/35", -1, "pseudo", 2)
        r = decide(c, first["item_id"], 2, "ana").json()["item"]
        assert (r["given"], r["label"], r["source"], r["who"]) == (y[0], 2, "human", "ana")
