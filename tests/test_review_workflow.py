"""The review page as a labeling tool (issue #17): fifteen classes and a type-ahead picker, "none of
these", zoom, table rows and text items, ticked cards and bulk accept, filters and sort, progress
and run feedback per queue, the diversity option, two reviewers kept apart.

Real parts only: a LabelStore in SQLite, uvicorn on 127.0.0.1, Debian's headless Chromium. One
server and one browser per store, shared by the module; every write is checked in SQLite."""
from __future__ import annotations

import re
import shutil
import socket
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from conftest import CHROMIUM_ARGS
from pseudolabel.review import create_app, review_url
from pseudolabel.review.checks import MAX_BULK
from pseudolabel.store import LabelStore, active_queue

TOKEN = "workflow-token-17"
PORT = 8765
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "lion", "otter",
           "panda", "rabbit", "ship", "tiger", "zebra"]
SHOTS = Path("/tmp/review_shots")
SELECTED = re.compile(r"\bselected\b")
REVIEW = "Battery lasts two full days and the screen is sharp even in direct sunlight; would buy again."


def build_image_store(path: Path) -> Path:
    """120 digits images, 15 classes: 60 given (40 with cleaning suggestions), 20 pseudo labels,
    predictions for 60 (40 of them unlabeled: the active queue), one decision before the last run."""
    rng = np.random.default_rng(0)
    s = LabelStore(path)
    s.set_classes(CLASSES)
    keys = [f"img/{i:03d}" for i in range(120)]
    s.add_items(keys, [f"x:{i}" for i in range(120)])
    given = rng.integers(0, 15, 60)
    s.add_labels(keys[:60], given, "given")
    s.begin_run("clean", {"folds": 4}, run_id="clean-1")
    suggested = np.where(np.arange(40) % 2 == 0, (given[:40] + 1) % 15, given[:40])
    s.record_suggestions(keys[:40], given[:40], suggested, np.linspace(0.9, 0.1, 40), "clean-1",
                         confidence=np.linspace(0.99, 0.5, 40))
    s.add_labels(keys[60:61], [4], "human", who="earlier")  # before the selftrain run: it took it in
    s.begin_run("selftrain", {"threshold": 0.8}, run_id="selftrain-1")
    s.add_labels(keys[60:80], rng.integers(0, 15, 20), "pseudo", confidence=np.linspace(0.8, 0.999, 20),
                 round=1, run_id="selftrain-1")
    proba = rng.dirichlet(np.full(15, 0.3), 60)
    s.record_predictions(keys[60:], proba, "selftrain-1")
    s.close()
    return path


def build_table_store(path: Path) -> Path:
    """12 rows of a CSV with a text column and numeric ones; the store's source is the CSV."""
    table = path.parent / "reviews.csv"
    pd.DataFrame({
        "product": [f"phone {i}" for i in range(12)],
        "review": [REVIEW if i == 0 else f"Row {i}: " + "a long enough text to read as a paragraph " * 2
                   for i in range(12)],
        "stars": [5, 4, 3, 2, 1, 5, 4, 3, 2, 1, 5, 4],
        "price": [199.5 + i for i in range(12)],
    }).to_csv(table, index=False)
    s = LabelStore(path)
    s.set_classes(CLASSES)
    keys = [f"row/{i}" for i in range(12)]
    s.add_items(keys, [f"row:{i}" for i in range(12)])
    s.add_labels(keys[:6], [0, 1, 2, 3, 4, 5], "given")
    s.set_meta("images", str(table.resolve()))
    s.close()
    return path


class Server:
    """uvicorn in a thread on a free port of 127.0.0.1."""

    def __init__(self, db: Path, images) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        app = create_app(db, images, token=TOKEN, port=self.port, who="server")
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        self.url = review_url("127.0.0.1", self.port, TOKEN)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def image_db(tmp_path_factory):
    return build_image_store(tmp_path_factory.mktemp("images") / "labels.db")


@pytest.fixture(scope="module")
def table_db(tmp_path_factory):
    return build_table_store(tmp_path_factory.mktemp("table") / "labels.db")


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def image_server(image_db):
    srv = Server(image_db, "digits")
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def table_server(table_db):
    srv = Server(table_db, None)  # the table comes from the store's meta value
    yield srv
    srv.close()


def human(db, who=None):
    """(key, label, who, note) of every effective human event, oldest first."""
    q = ("SELECT i.key, e.label, e.who, e.note FROM events e JOIN items i ON i.id = e.item_id "
         "WHERE e.source = 'human' AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes = e.id)")
    with sqlite3.connect(db) as conn:
        rows = conn.execute(q + " ORDER BY e.id").fetchall()
    return [r for r in rows if who is None or r[2] == who]


def wait_for(predicate, timeout=30.0):  # generous: the suite runs Ray and CNN jobs beside the browser
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def open_page(browser, url, who, errors, width=1366):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector(".card.selected")
    expect(page.locator("#who-form")).to_be_visible()
    page.fill("#who-input", who)
    page.click("#who-form button")
    expect(page.locator("#who")).to_have_text(who)
    return page


def shot(page, tmp_path, name):
    """A screenshot under the test's tmp_path, copied to /tmp/review_shots for a person to look at."""
    path = tmp_path / f"{name}.png"
    # Lazy images in the window finish loading first (a black square is a picture not yet drawn).
    wait_for(lambda: page.locator("img").evaluate_all(
        "els => els.every(e => e.getBoundingClientRect().top > innerHeight || (e.complete && e.naturalWidth > 0))"))
    page.screenshot(path=str(path), full_page=False)
    SHOTS.mkdir(exist_ok=True)
    shutil.copy(path, SHOTS / path.name)
    return path


def no_horizontal_overflow(page):
    # Nothing wider than the window: the page never scrolls sideways at 1366 px.
    width = page.evaluate("document.documentElement.scrollWidth")  # a property read, allowed by the CSP
    assert width <= 1366, width


# ---------------------------------------------------------------------------------- in Chromium
@pytest.mark.browser
def test_fifteen_classes_type_ahead_reject_zoom_and_bulk_accept(browser, image_server, image_db, tmp_path):
    from playwright.sync_api import expect

    errors = []
    page = open_page(browser, image_server.url + "&queue=suspects", "ana", errors)
    assert page.locator(".card").count() == 40
    assert page.locator("#pick-list button").count() == 15  # every class, clickable
    no_horizontal_overflow(page)
    shot(page, tmp_path, "suspects")

    # Type-ahead: "/" focuses the picker, "sh" narrows to ship (class 12), Enter sets it.
    first = page.locator(".card.selected").get_attribute("data-item-id")
    page.keyboard.press("/")
    page.keyboard.type("sh")
    expect(page.locator("#pick-list button")).to_have_count(1)
    expect(page.locator("#pick-list button")).to_contain_text("ship")
    page.keyboard.press("Enter")
    wait_for(lambda: human(image_db, "ana") == [("img/000", 12, "ana", "set")])
    expect(page.locator(".card").nth(0).locator(".row.lab b")).to_contain_text("ship")
    assert page.locator(".card").nth(0).get_attribute("data-item-id") == first

    # A mouse click on a class button sets a class past the ten digit keys (14: zebra).
    keys = page.locator(".card .key").all_inner_texts()
    expect(page.locator(".card").nth(1)).to_have_class(SELECTED)
    page.locator("#pick-list button[data-cls='14']").click()
    wait_for(lambda: human(image_db, "ana")[-1] == (keys[1], 14, "ana", "set"))

    # "None of these": x records label -1 as a person's decision; the card says so.
    expect(page.locator(".card").nth(2)).to_have_class(SELECTED)
    page.keyboard.press("x")
    wait_for(lambda: human(image_db, "ana")[-1] == (keys[2], -1, "ana", "reject"))
    expect(page.locator(".card").nth(2).locator(".row.lab b")).to_have_text("none of these")

    # Zoom: a large, pixel-sharp image (8x8 digits upscaled to 448), Escape closes it.
    page.keyboard.press("z")
    expect(page.locator("#zoom")).to_be_visible()
    expect(page.locator("#zoom-box img")).to_have_js_property("naturalWidth", 448)
    shot(page, tmp_path, "zoom")
    page.keyboard.press("Escape")
    expect(page.locator("#zoom")).to_be_hidden()

    # Bulk: tick 20 cards (a click, then shift-click), accept their suggestions in one request.
    page.locator(".card").nth(10).locator(".check").click()
    page.locator(".card").nth(29).click(modifiers=["Shift"])
    expect(page.locator("#ticked")).to_have_text("20 ticked")
    expect(page.locator(".card.ticked")).to_have_count(20)
    page.click("#accept-ticked")
    wait_for(lambda: len(human(image_db, "ana")) == 23)
    with LabelStore(image_db, create=False) as s:
        sug = s.predictions("suspect").set_index("key")["predicted"]
    bulk = human(image_db, "ana")[3:]
    assert [k for k, *_ in bulk] == keys[10:30]
    assert all(label == sug[k] and note == "bulk accept" for k, label, _, note in bulk)
    with sqlite3.connect(image_db) as conn:  # one transaction: one timestamp for the 20 events
        stamps = conn.execute("SELECT COUNT(DISTINCT created_at) FROM events WHERE note = 'bulk accept'").fetchone()
    assert stamps == (1,)
    expect(page.locator("#ticked")).to_have_text("0 ticked")
    expect(page.locator("#progress")).to_have_text("23 / 40 reviewed")
    expect(page.locator("#queues .q[data-queue='suspects'] .count")).to_have_text("23 / 40 decided")

    # Filters: undecided only, sorted by confidence ascending.
    page.select_option("#f-decided", "undecided")
    expect(page.locator(".card")).to_have_count(17)
    page.select_option("#sort", "confidence")
    expect(page.locator(".card").first).to_contain_text("img/039")
    shot(page, tmp_path, "suspects-filtered")
    assert errors == []
    page.context.close()


@pytest.mark.browser
def test_audit_accept_above_confidence_and_run_feedback(browser, image_server, image_db, tmp_path):
    from playwright.sync_api import expect

    errors = []
    page = open_page(browser, image_server.url + "&queue=audit", "ben", errors)
    n = page.locator(".card").count()
    assert n == 20
    # The audit queue's decisions feed selftrain: the run took in the one made before it.
    fb = page.locator("#queues .q[data-queue='audit'] .fb")
    expect(fb).to_contain_text("took in 1 decision")
    expect(fb).to_contain_text("0 since")
    page.fill("#min-conf", "0.95")
    page.click("#accept-above")
    with LabelStore(image_db, create=False) as s:
        pseudo = s.events(source="pseudo")
        sure = sorted(s.items().set_index("item_id").loc[pseudo[pseudo["confidence"] >= 0.95]["item_id"], "key"])
    assert 0 < len(sure) < 20
    wait_for(lambda: len(human(image_db, "ben")) == len(sure))
    assert sorted(k for k, *_ in human(image_db, "ben")) == sure
    # Item img/060 already had a person's label (4) from before; "since" counts the new ones.
    expect(fb).to_contain_text(f"{len(sure)} since")
    no_horizontal_overflow(page)
    shot(page, tmp_path, "audit")
    # A typed confidence that is not one is refused on the page; nothing is written.
    page.fill("#min-conf", "2")
    page.click("#accept-above")
    expect(page.locator("#status")).to_contain_text("from 0 to 1")
    assert len(human(image_db, "ben")) == len(sure)
    assert errors == []
    page.context.close()


@pytest.mark.browser
def test_active_queue_diverse_toggle(browser, image_server, tmp_path):
    from playwright.sync_api import expect

    errors = []
    page = open_page(browser, image_server.url + "&queue=active", "cy", errors)
    expect(page.locator("#diverse-box")).to_be_visible()
    plain = page.locator(".card .key").all_inner_texts()
    page.check("#diverse")
    expect(page.locator(".card .key").first).to_have_text(plain[0])  # the most uncertain starts both
    wait_for(lambda: page.locator(".card .key").all_inner_texts() != plain)
    assert sorted(page.locator(".card .key").all_inner_texts()) == sorted(plain)
    no_horizontal_overflow(page)
    shot(page, tmp_path, "active-diverse")
    page.select_option("#queue", "all")
    expect(page.locator("#diverse-box")).to_be_hidden()
    expect(page.locator(".card")).to_have_count(120)
    shot(page, tmp_path, "all")
    assert errors == []
    page.context.close()


@pytest.mark.browser
def test_two_reviewers_are_kept_apart(browser, image_server, image_db, tmp_path):
    from playwright.sync_api import expect

    errors = []
    url = image_server.url + "&queue=all"
    dee = open_page(browser, url, "dee", errors)
    eve = open_page(browser, url, "eve", errors)
    for page, label in ((dee, "7"), (eve, "8")):
        page.locator(".card").nth(100).click()
        page.keyboard.press(label)
    wait_for(lambda: human(image_db, "dee") == [("img/100", 7, "dee", "set")]
             and human(image_db, "eve") == [("img/100", 8, "eve", "set")])
    eve.locator(".card").nth(101).click()
    eve.keyboard.press("9")
    wait_for(lambda: len(human(image_db, "eve")) == 2)
    # u takes back eve's latest decision only; dee's stays.
    eve.keyboard.press("u")
    wait_for(lambda: human(image_db, "eve") == [("img/100", 8, "eve", "set")])
    assert human(image_db, "dee") == [("img/100", 7, "dee", "set")]
    # The agreement of the two is on the page, not only in /api/reviewers.
    dee.reload()
    dee.wait_for_selector(".card.selected")
    expect(dee.locator("#reviewers .pair").filter(has_text="dee & eve")).to_have_text(
        "dee & eve: 1 shared, 0% agree (0)")
    shot(dee, tmp_path, "reviewers")
    assert errors == []
    dee.context.close()
    eve.context.close()


@pytest.mark.browser
def test_table_rows_and_text_items(browser, table_server, table_db, tmp_path):
    from playwright.sync_api import expect

    errors = []
    page = open_page(browser, table_server.url + "&queue=all", "fay", errors)
    first = page.locator(".card").first
    # The row instead of an image: the long text as a paragraph, every other column as name / value.
    expect(first.locator(".rowview p.text")).to_have_text(REVIEW)
    expect(first.locator(".rowview dt")).to_have_text(["product", "stars", "price"])
    expect(first.locator(".rowview dd")).to_have_text(["phone 0", "5", "199.5"])
    assert page.locator(".card img").count() == 0
    no_horizontal_overflow(page)
    shot(page, tmp_path, "table-rows")
    page.keyboard.press("z")
    expect(page.locator("#zoom-box .rowview p.text")).to_have_text(REVIEW)
    shot(page, tmp_path, "table-zoom")
    page.keyboard.press("Escape")
    page.keyboard.press("3")
    wait_for(lambda: human(table_db) == [("row/0", 3, "fay", "set")])
    assert errors == []
    page.context.close()


# ---------------------------------------------------------------------------------- the API
@pytest.fixture
def client(tmp_path):
    db = build_image_store(tmp_path / "labels.db")
    with TestClient(create_app(db, "digits", token=TOKEN, port=PORT, who="t"),
                    base_url=f"http://127.0.0.1:{PORT}") as c:
        c.db = db
        yield c


def post(client, path, body):
    return client.post(path, json=body, headers={"X-Review-Token": TOKEN})


def count_events(db):
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]


@pytest.mark.parametrize("body, status, words", [
    ({"action": "accept", "queue": "suspects", "item_ids": list(range(1, MAX_BULK + 2))}, 400, "1 to 500"),
    ({"action": "accept", "queue": "suspects", "item_ids": []}, 400, "1 to 500"),
    ({"action": "accept", "queue": "suspects", "item_ids": [1, 2, 1]}, 400, "twice"),
    ({"action": "accept", "queue": "suspects", "item_ids": [1, 2.0]}, 400, "whole number"),
    ({"action": "accept", "queue": "suspects", "item_ids": [1, True]}, 400, "whole number"),
    ({"action": "accept", "queue": "suspects", "item_ids": [1, "2"]}, 400, "whole number"),
    ({"action": "accept", "queue": "suspects", "item_ids": [1, [2]]}, 400, "must be a number or a string"),
    ({"action": "accept", "queue": "suspects", "item_ids": 5}, 400, "list"),
    ({"action": "accept", "queue": "suspects", "item_ids": [1, 2**63]}, 400, "64 bits"),
    ({"action": "accept", "queue": "nope", "item_ids": [1]}, 400, "queue must be"),
    ({"action": "accept", "item_ids": [1]}, 400, "needs queue"),
    ({"action": "set", "item_ids": [1]}, 400, "needs label"),
    ({"action": "set", "label": 15, "item_ids": [1, 2]}, 400, "label"),
    ({"action": "set", "label": -1, "item_ids": [1]}, 400, "label must be"),
    ({"action": "drop", "item_ids": [1]}, 400, "action must be"),
    ({"action": "accept", "queue": "suspects", "item_ids": [1, 999]}, 404, "no item with id 999"),
    # item 41 is given but has no cleaning suggestion: the whole request is refused
    ({"action": "accept", "queue": "suspects", "item_ids": [1, 41]}, 400, "no suggestion"),
    ({"action": "keep", "item_ids": [1, 100]}, 400, "no label to keep"),
    ({"action": "reject", "item_ids": [1], "who": "<b>"}, 400, "markup"),
])
def test_bad_bulk_requests_are_one_line_and_write_nothing(client, body, status, words):
    before = count_events(client.db)
    r = post(client, "/api/bulk", body)
    assert r.status_code == status, r.text
    message = r.json()["error"]
    assert words in message and "\n" not in message and len(message) < 300
    assert count_events(client.db) == before


def test_bulk_needs_the_token_and_the_page_origin(client):
    body = {"action": "reject", "item_ids": [1, 2]}
    assert client.post("/api/bulk", json=body).status_code == 403
    r = client.post("/api/bulk", json=body, headers={"X-Review-Token": TOKEN, "Origin": "http://evil.example"})
    assert r.status_code == 403
    r = client.post("/api/bulk", json=body, headers={"X-Review-Token": TOKEN, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert human(client.db) == [("img/060", 4, "earlier", None)]


def test_bulk_set_reject_keep_and_a_form(client):
    r = post(client, "/api/bulk", {"action": "set", "label": 12, "item_ids": [3, 4], "who": "gil"})
    assert r.status_code == 200 and r.json()["written"] == 2
    assert [i["label"] for i in r.json()["items"]] == [12, 12]
    assert post(client, "/api/bulk", {"action": "reject", "item_ids": [5], "who": "gil"}).json()["items"][0]["label"] == -1
    assert post(client, "/api/bulk", {"action": "keep", "item_ids": [6], "who": "gil"}).status_code == 200
    form = client.post("/api/bulk", data={"action": "reject", "item_ids": "7,8", "token": TOKEN, "who": "gil"})
    assert form.status_code == 200 and form.json()["written"] == 2
    rows = human(client.db, "gil")
    assert [(k, lab, note) for k, lab, _, note in rows] == [
        ("img/002", 12, "bulk set"), ("img/003", 12, "bulk set"), ("img/004", -1, "bulk reject"),
        ("img/005", rows[3][1], "bulk keep"), ("img/006", -1, "bulk reject"), ("img/007", -1, "bulk reject")]


def test_reject_is_a_human_event_with_label_minus_one(client):
    r = post(client, "/api/decide", {"item_id": 2, "action": "reject", "who": "hal"})
    assert r.status_code == 200 and r.json()["item"]["label"] == -1 and r.json()["item"]["source"] == "human"
    assert human(client.db, "hal") == [("img/001", -1, "hal", "reject")]


@pytest.mark.parametrize("params, words", [
    ({"sort": "random"}, "sort must be"), ({"source": "robot"}, "source must be"),
    ({"decided": "maybe"}, "decided must be"), ({"min_confidence": "nan"}, "from 0 to 1"),
    ({"min_confidence": "1.5"}, "from 0 to 1"), ({"min_confidence": "1e-3"}, "from 0 to 1"),
    ({"diverse": "yes"}, "diverse must be"),
])
def test_bad_queue_parameters_are_refused(client, params, words):
    r = client.get("/api/queue", params={"queue": "suspects", **params})
    assert r.status_code == 400 and words in r.json()["error"]


def test_filters_sort_and_min_confidence(client):
    def keys(**p):
        return [i["key"] for i in client.get("/api/queue", params={"queue": "suspects", "limit": 1000, **p})
                .json()["items"]]
    everything = keys()
    assert len(everything) == 40
    by_conf = client.get("/api/queue", params={"queue": "suspects", "sort": "-confidence"}).json()["items"]
    assert [i["confidence"] for i in by_conf] == sorted((i["confidence"] for i in by_conf), reverse=True)
    sure = client.get("/api/queue", params={"queue": "suspects", "min_confidence": "0.9"}).json()
    assert sure["total"] == sum(c >= 0.9 for c in np.linspace(0.99, 0.5, 40)) and sure["queue_total"] == 40
    post(client, "/api/decide", {"item_id": 1, "label": 3, "who": "ivy"})
    assert keys(decided="decided") == ["img/000"] and "img/000" not in keys(decided="undecided")
    assert keys(source="human") == ["img/000"] and len(keys(source="given")) == 39


def test_item_content_endpoint(client, tmp_path):
    assert client.get("/api/item/1").json() == {"item_id": 1, "kind": "image"}
    assert client.get("/api/item/9999").status_code == 404
    large = client.get("/image/1", params={"size": "large"})
    assert large.status_code == 200 and large.headers["content-type"] == "image/png"
    assert client.get("/image/1", params={"size": "../../etc"}).status_code == 400
    (tmp_path / "t").mkdir()
    db = build_table_store(tmp_path / "t" / "labels.db")
    with TestClient(create_app(db, None, token=TOKEN, port=PORT), base_url=f"http://127.0.0.1:{PORT}") as c:
        row = c.get("/api/item/1").json()
        assert row["kind"] == "row" and row["row"] == 0
        assert row["columns"][1] == {"name": "review", "value": REVIEW, "text": True}
        assert row["columns"][2] == {"name": "stars", "value": 5, "text": False}
        assert c.get("/api/summary").json()["content"] == "row"
        # The table is read from the store's source only; a changed file is read again.
        (db.parent / "reviews.csv").write_text("product,stars\nother,1\n")
        assert c.get("/api/item/1").json()["columns"] == [{"name": "product", "value": "other", "text": False},
                                                          {"name": "stars", "value": 1, "text": False}]
        gone = c.get("/api/item/2")  # row:1 is past the end of the new file
        assert gone.status_code == 404 and "outside" in gone.json()["error"]


def test_summary_progress_and_feedback(client):
    info = client.get("/api/summary").json()
    assert info["progress"]["audit"]["feedback"]["used"] == 1
    assert info["progress"]["audit"]["feedback"]["job"] == "selftrain"
    assert info["progress"]["suspects"]["feedback"] == {
        "run_id": "clean-1", "job": "clean", "run_at": info["progress"]["suspects"]["feedback"]["run_at"],
        "used": 0, "since": 0}
    post(client, "/api/decide", {"item_id": 1, "label": 3, "who": "jo"})
    info = client.get("/api/summary").json()
    assert info["progress"]["suspects"]["decided"] == 1 and info["progress"]["suspects"]["total"] == 40
    assert info["progress"]["suspects"]["feedback"]["since"] == 1
    assert info["progress"]["all"]["feedback"] == {**info["progress"]["all"]["feedback"], "used": 1, "since": 1}


def test_diverse_active_queue_spreads_over_the_probabilities(tmp_path):
    db = build_image_store(tmp_path / "labels.db")
    with LabelStore(db, create=False) as s:
        plain = active_queue(s)
        spread = active_queue(s, diverse=10)
        assert spread["item_id"].iloc[0] == plain["item_id"].iloc[0]  # the most uncertain first
        assert sorted(spread["item_id"]) == sorted(plain["item_id"])   # same items, another order
        assert spread["reason"].tolist()[:10] == ["diverse"] * 10
        proba = s.predictions(with_proba=True).set_index("item_id")["proba"]

        def spread_of(ids):
            x = np.stack([proba[i] for i in ids])
            return np.mean([np.linalg.norm(a - b) for a in x for b in x])
        assert spread_of(spread["item_id"][:10]) > spread_of(plain["item_id"][:10])
        # The picks come from the 5k most uncertain.
        assert set(spread["item_id"][:10]) <= set(plain["item_id"][:50])
        with pytest.raises(Exception, match="diverse must be"):
            active_queue(s, diverse=-1)
