"""End to end in a real headless Chromium (Debian's), driven by Playwright: open the printed-style
URL, relabel the selected item with the keyboard, undo, and find the events in SQLite."""
from __future__ import annotations

import socket
import sqlite3
import threading
import time

import numpy as np
import pytest

from conftest import CHROMIUM_ARGS
from pseudolabel.review import create_app, review_url
from pseudolabel.store import LabelStore

pytestmark = pytest.mark.browser
TOKEN = "browser-token-42"


@pytest.fixture
def db(tmp_path, mnist_small):
    x, y = mnist_small[0][:24], mnist_small[1][:24]
    np.savez(tmp_path / "images.npz", x_train=x)
    s = LabelStore(tmp_path / "labels.db")
    s.set_classes([str(d) for d in range(10)])
    keys = [f"train/{i}" for i in range(24)]
    s.add_items(keys, [f"x_train:{i}" for i in range(24)])
    s.add_labels(keys, y, "given")
    s.record_suggestions(keys[:6], y[:6], (y[:6] + 1) % 10, np.linspace(0.9, 0.4, 6), "clean-1")
    s.close()
    return tmp_path / "labels.db"


@pytest.fixture
def server_url(db):
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    app = create_app(db, db.parent / "images.npz", token=TOKEN, port=port, who="browser")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield review_url("127.0.0.1", port, TOKEN)
    server.should_exit = True
    thread.join(10)
    sock.close()


def events(db, source):
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT i.key, e.label, e.who FROM events e JOIN items i ON i.id = e.item_id "
                            "WHERE e.source = ? ORDER BY e.id", (source,)).fetchall()


def wait_for(predicate, timeout=10.0):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_keyboard_relabel_is_written_to_sqlite(db, server_url, chromium_path):
    from playwright.sync_api import expect, sync_playwright

    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server_url)
            page.wait_for_selector(".card.selected")
            assert page.locator(".card").count() == 6  # the suspects queue, most suspicious first
            assert "train/0" in page.locator(".card.selected").inner_text()
            assert page.locator("#progress").inner_text() == "0 / 6 reviewed"
            # All images load: the PNG endpoint answers for every card. (The page's CSP forbids
            # eval, so the test waits with locators, not wait_for_function.)
            for i in range(6):
                expect(page.locator(".card img").nth(i)).to_have_js_property("naturalWidth", 112)

            given = events(db, "given")[0][1]
            new = (given + 3) % 10
            page.keyboard.press(str(new))
            wait_for(lambda: events(db, "human") == [("train/0", new, "browser")])
            expect(page.locator("#progress")).to_have_text("1 / 6 reviewed")
            first = page.locator(".card").nth(0)
            assert "reviewed" in first.get_attribute("class") and f"label {new}" in first.inner_text()
            # The selection moved on; `a` accepts the second item's suggestion.
            assert "train/1" in page.locator(".card.selected").inner_text()
            page.keyboard.press("a")
            wait_for(lambda: len(events(db, "human")) == 2)
            assert events(db, "human")[1][1] == (events(db, "given")[1][1] + 1) % 10
            expect(page.locator("#progress")).to_have_text("2 / 6 reviewed")
            # `u` undoes the last decision.
            page.keyboard.press("u")
            wait_for(lambda: len(events(db, "undo")) == 1)
            expect(page.locator("#progress")).to_have_text("1 / 6 reviewed")
        finally:
            browser.close()
    assert errors == []
