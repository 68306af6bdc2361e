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
    s.record_suggestions(keys[:6], y[:6], (y[:6] + 1) % 10, np.linspace(0.9, 0.4, 6), "clean-1",
                         confidence=np.linspace(0.98, 0.6, 6))
    # `clean --policy relabel` applied the first suggestion, with a confidence of its own.
    s.add_labels(keys[:1], (y[:1] + 1) % 10, "corrected", confidence=0.662, run_id="clean-1")
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


def enter_name(page, name):
    from playwright.sync_api import expect

    expect(page.locator("#who-form")).to_be_visible()  # asked on first load
    page.fill("#who-input", name)
    page.click("#who-form button")
    expect(page.locator("#who-form")).to_be_hidden()
    expect(page.locator("#who")).to_have_text(name)


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
            enter_name(page, "Ana")
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
            wait_for(lambda: events(db, "human") == [("train/0", new, "Ana")])
            expect(page.locator("#progress")).to_have_text("1 / 6 reviewed")
            first = page.locator(".card").nth(0)
            assert "reviewed" in first.get_attribute("class")
            assert first.locator(".row.lab").inner_text().split() == ["current", str(new), "human", "\u00b7", "Ana"]
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


def test_cards_show_given_vs_suggested_and_decisions_carry_the_name(db, server_url, chromium_path, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    errors = []
    with LabelStore(db, create=False) as s:
        given = dict(zip(s.events(source="given")["item_id"], s.events(source="given")["label"]))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server_url)
            page.wait_for_selector(".card.selected")
            # A name with markup is refused on the page itself; then a good one is kept.
            page.fill("#who-input", "<b>x</b>")
            page.click("#who-form button")
            expect(page.locator("#who-error")).to_contain_text("cannot hold")
            enter_name(page, "Ana Lima")
            # The first card: relabeled by clean; given, suggested with the suggestion's confidence
            # (0.98, not the corrected event's 0.662), a differs mark in text, current = corrected.
            first = page.locator(".card").nth(0)
            assert "differs" in first.get_attribute("class").split()
            g, sug = int(given[1]), (int(given[1]) + 1) % 10
            assert first.locator(".row.given").inner_text().split() == ["given", str(g)]
            assert first.locator(".row.sug").inner_text().split() == ["suggested", str(sug), "0.98"]
            expect(first.locator(".mark.differs")).to_have_text("\u2260 differs from given")
            assert first.locator(".row.lab").inner_text().split() == ["current", str(sug), "corrected"]
            detail = page.locator("#detail")
            expect(detail.locator("dl")).to_contain_text("0.98")
            expect(detail.locator("tr.current")).to_contain_text("0.98")  # the same number in the panel
            assert "0.66" not in detail.inner_text()
            page.locator(".card").nth(0).screenshot(path=str(tmp_path / "card.png"))
            page.screenshot(path=str(tmp_path / "suspects.png"))
            # Relabel the second suspect by keyboard: the event carries the name.
            page.locator(".card").nth(1).click()
            page.keyboard.press("7")
            with LabelStore(db, create=False) as s:
                wait_for(lambda: s.events(source="human")[["item_id", "label", "who"]].values.tolist()
                         == [[2, 7, "Ana Lima"]])
            expect(page.locator("#reviewers tr.reviewer")).to_have_text(["Ana Lima1given 1"])
            # The name is kept across loads: no form the second time.
            page.reload()
            page.wait_for_selector(".card.selected")
            expect(page.locator("#who")).to_have_text("Ana Lima")
            expect(page.locator("#who-form")).to_be_hidden()
        finally:
            browser.close()
    assert errors == []
