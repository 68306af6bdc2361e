"""The review page against hostile requests: every one a 4xx with a one-line message and nothing
written to the store. In-process through Starlette's TestClient, and the body-size limit through a
real uvicorn server over HTTP; markup in keys and class names stays text in a real Chromium."""
from __future__ import annotations

import socket
import threading
import time

import httpx
import numpy as np
import pytest
from starlette.testclient import TestClient

from pseudolabel.review import create_app, review_url
from pseudolabel.review.app import MAX_BODY_BYTES
from pseudolabel.review.page import REVIEW_JS
from pseudolabel.store import LabelStore

# Part of the reliability suite (`make reliability`, docs/reliability.md); `make test` runs it too.
pytestmark = pytest.mark.reliability

PORT = 8765
TOKEN = "hostile-token-7"
BASE = f"http://127.0.0.1:{PORT}"
OK = {"X-Review-Token": TOKEN}
JSON = {**OK, "Content-Type": "application/json"}
# Markup where a page might paste text as HTML: class names, item keys (notes are written by the
# page itself: the action, validated).
CLASSES = ["<script>document.title='pwned'</script>", "<img src=x onerror=alert(1)>", "cat", "dog"]
KEYS = ["<img src=x onerror=alert(2)>", "a&amp;b<b>bold</b>", "plain/2", "plain/3", "plain/4", "plain/5"]


def make_store(path):
    """Six 8x8 images, four labeled (one a human decision, so that a stray undo would write),
    one suggestion; class names and keys carry markup."""
    np.savez(path / "images.npz", x_train=np.arange(6 * 64, dtype=np.uint8).reshape(6, 8, 8))
    s = LabelStore(path / "labels.db")
    s.set_classes(CLASSES)
    s.add_items(KEYS, [f"x_train:{i}" for i in range(6)])
    s.add_labels(KEYS[:4], [0, 1, 2, 3], "given")
    s.add_labels(KEYS[3:4], [2], "human", who="earlier")
    s.record_suggestions(KEYS[:2], [0, 1], [1, 0], [0.9, 0.8], "clean-1")
    s.close()
    return path / "labels.db"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def client(db):
    app = create_app(db, db.parent / "images.npz", token=TOKEN, port=PORT, who="tester")
    with TestClient(app, base_url=BASE) as c:
        yield c


@pytest.fixture(scope="module")
def reader(db):
    with LabelStore(db, create=False) as s:
        yield s


def written(store) -> tuple:
    """Everything a write moves: the latest ids and item count, and the number of event rows."""
    return store.revision(), store.rows("SELECT COUNT(*) FROM events")[0][0]


def deep(n: int) -> bytes:
    return b'{"item_id": ' + b"[" * n + b"]" * n + b', "label": 1}'


def decide(content=None, headers=JSON, **kw):
    if content is not None and not isinstance(content, bytes):
        content = content.encode()
    return ("POST", "/api/decide", dict(content=content, headers=headers, **kw))


def get(path, **kw):
    return ("GET", path, kw)


# (id, request, expected status). Each request carries the token unless the case is about it.
CASES = [
    # --- item_id: only a JSON integer of 64 bits naming a real item
    ("id-1e30", decide('{"item_id": 1e30, "label": 1}'), 400),
    ("id-2**63", decide('{"item_id": 9223372036854775808, "label": 1}'), 400),
    ("id-below-int64", decide('{"item_id": -9223372036854775809, "label": 1}'), 400),
    ("id-Infinity", decide('{"item_id": Infinity, "label": 1}'), 400),
    ("id--Infinity", decide('{"item_id": -Infinity, "label": 1}'), 400),
    ("id-NaN", decide('{"item_id": NaN, "label": 1}'), 400),
    ("id-1.9", decide('{"item_id": 1.9, "label": 1}'), 400),
    ("id-1.0", decide('{"item_id": 1.0, "label": 1}'), 400),
    ("id-true", decide('{"item_id": true, "label": 1}'), 400),
    ("id-false", decide('{"item_id": false, "label": 1}'), 400),
    ("id-null", decide('{"item_id": null, "label": 1}'), 400),
    ("id-string", decide('{"item_id": "1", "label": 1}'), 400),
    ("id-list", decide('{"item_id": [1], "label": 1}'), 400),
    ("id-object", decide('{"item_id": {"$gt": 0}, "label": 1}'), 400),
    ("id-5000-digits", decide('{"item_id": ' + "9" * 5000 + ', "label": 1}'), 400),
    ("id-missing", decide('{"label": 1}'), 400),
    ("id-0", decide('{"item_id": 0, "label": 1}'), 404),
    ("id-negative", decide('{"item_id": -1, "label": 1}'), 404),
    ("id-unknown", decide('{"item_id": 999, "label": 1}'), 404),
    ("id-int64-max", decide('{"item_id": 9223372036854775807, "label": 1}'), 404),
    ("id-keep-unknown", decide('{"item_id": 424242, "action": "keep"}'), 404),
    ("id-form-float", decide("item_id=1.9&label=1", headers={
        **OK, "Content-Type": "application/x-www-form-urlencoded"}), 400),
    ("id-form-20-digits", decide("item_id=99999999999999999999&label=1", headers={
        **OK, "Content-Type": "application/x-www-form-urlencoded"}), 400),
    ("id-form-arabic-digit", decide("item_id=%D9%A1&label=1", headers={
        **OK, "Content-Type": "application/x-www-form-urlencoded"}), 400),
    # --- labels: integers in the store's classes (0..3 here); -1 is not a decision of the page
    ("label-1.5", decide('{"item_id": 1, "label": 1.5}'), 400),
    ("label-true", decide('{"item_id": 1, "label": true}'), 400),
    ("label-string", decide('{"item_id": 1, "label": "2"}'), 400),
    ("label-null", decide('{"item_id": 1, "label": null}'), 400),
    ("label-minus-1", decide('{"item_id": 1, "label": -1}'), 400),
    ("label-minus-2", decide('{"item_id": 1, "label": -2}'), 400),
    ("label-past-classes", decide('{"item_id": 1, "label": 4}'), 400),
    ("label-2**63", decide('{"item_id": 1, "label": 9223372036854775808}'), 400),
    ("label-1e400", decide('{"item_id": 1, "label": 1e400}'), 400),
    ("label-missing", decide('{"item_id": 1}'), 400),
    ("action-unknown", decide('{"item_id": 1, "label": 1, "action": "delete"}'), 400),
    ("action-list", decide('{"item_id": 1, "label": 1, "action": ["set"]}'), 400),
    ("action-markup", decide('{"item_id": 1, "label": 1, "action": "<script>x</script>\\n"}'), 400),
    ("keep-unlabeled", decide('{"item_id": 5, "action": "keep"}'), 400),
    # --- body shape and encoding
    ("deep-100000", decide(deep(100_000)), 413),
    ("deep-30000", decide(deep(30_000)), 400),
    ("deep-object", decide(b'{"a":' * 10_000 + b"1" + b"}" * 10_000), 400),
    ("top-level-list", decide("[1, 2]"), 400),
    ("top-level-string", decide('"item_id"'), 400),
    ("not-json", decide("{item_id: 1,"), 400),
    ("bad-utf8-json", decide(b'{"item_id": 1, "label": "\xff\xfe"}'), 400),
    ("bad-utf8-form", decide(b"item_id=1&label=\xff", headers={
        **OK, "Content-Type": "application/x-www-form-urlencoded"}), 400),
    ("empty-json", decide(b"{}"), 400),
    ("text-plain", decide('{"item_id": 1, "label": 1}', headers={**OK, "Content-Type": "text/plain"}), 415),
    ("no-content-type", decide('{"item_id": 1, "label": 1}', headers=OK), 415),
    ("xml", decide("<d><item_id>1</item_id></d>", headers={**OK, "Content-Type": "application/xml"}), 415),
    # --- size: never read past the limit
    ("body-100KB", decide(b'{"item_id": 1, "label": 1, "pad": "' + b"x" * 100_000 + b'"}'), 413),
    ("claims-100MB", decide('{"item_id": 1, "label": 1}', headers={**JSON, "Content-Length": str(100 << 20)}),
     413),
    ("claims-100MB-bad-token", decide('{"item_id": 1, "label": 1}', headers={
        **JSON, "X-Review-Token": "wrong", "Content-Length": str(100 << 20)}), 403),
    ("content-length-junk", decide('{"item_id": 1, "label": 1}', headers={**JSON, "Content-Length": "1e9"}),
     400),
    # --- token
    ("no-token", decide('{"item_id": 1, "label": 1}', headers={"Content-Type": "application/json"}), 403),
    ("wrong-token-header", decide('{"item_id": 1, "label": 1}', headers={**JSON, "X-Review-Token": "x"}), 403),
    ("empty-token-header", decide('{"item_id": 1, "label": 1}', headers={**JSON, "X-Review-Token": ""}), 403),
    ("wrong-token-body", decide('{"item_id": 1, "label": 1, "token": "nope"}',
                                headers={"Content-Type": "application/json"}), 403),
    ("token-not-a-string", decide('{"item_id": 1, "label": 1, "token": 123}',
                                  headers={"Content-Type": "application/json"}), 403),
    ("token-lone-surrogate", decide('{"item_id": 1, "label": 1, "token": "\\ud800"}',
                                    headers={"Content-Type": "application/json"}), 403),
    ("token-in-query-only", ("POST", f"/api/decide?token={TOKEN}", dict(
        content=b'{"item_id": 1, "label": 1}', headers={"Content-Type": "application/json"})), 403),
    ("undo-no-token", ("POST", "/api/undo", {}), 403),
    # --- cross-site writes, even with the token
    ("origin-evil", decide('{"item_id": 1, "label": 1}', headers={**JSON, "Origin": "http://evil.example"}), 403),
    ("origin-null", decide('{"item_id": 1, "label": 1}', headers={**JSON, "Origin": "null"}), 403),
    ("origin-suffix", decide('{"item_id": 1, "label": 1}',
                             headers={**JSON, "Origin": "http://127.0.0.1:8765.evil.example"}), 403),
    ("origin-https", decide('{"item_id": 1, "label": 1}', headers={**JSON, "Origin": "https://127.0.0.1:8765"}),
     403),
    ("origin-other-port", decide('{"item_id": 1, "label": 1}',
                                 headers={**JSON, "Origin": "http://127.0.0.1:9999"}), 403),
    ("fetch-cross-site", decide('{"item_id": 1, "label": 1}', headers={**JSON, "Sec-Fetch-Site": "cross-site"}),
     403),
    ("fetch-same-site", decide('{"item_id": 1, "label": 1}', headers={**JSON, "Sec-Fetch-Site": "same-site"}),
     403),
    ("own-origin-cross-site", decide('{"item_id": 1, "label": 1}', headers={
        **JSON, "Origin": BASE, "Sec-Fetch-Site": "cross-site"}), 403),
    ("form-from-evil", decide(f"item_id=1&label=1&token={TOKEN}", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example",
        "Sec-Fetch-Site": "cross-site"}), 403),
    ("undo-from-evil", ("POST", "/api/undo", dict(headers={**OK, "Origin": "http://evil.example"})), 403),
    # --- foreign and DNS-rebinding Host headers
    ("host-evil", get("/api/summary", headers={"Host": "evil.example"}), 400),
    ("host-suffix", get("/api/summary", headers={"Host": "127.0.0.1:8765.evil.example"}), 400),
    ("host-rebind-name", get("/api/summary", headers={"Host": "127.0.0.1.nip.io:8765"}), 400),
    ("host-trailing-dot", get("/api/summary", headers={"Host": "localhost.:8765"}), 400),
    ("host-hex-ip", get("/api/summary", headers={"Host": "0x7f000001:8765"}), 400),
    ("host-short-ip", get("/api/summary", headers={"Host": "127.1:8765"}), 400),
    ("host-mapped-v6", get("/api/summary", headers={"Host": "[::ffff:127.0.0.1]:8765"}), 400),
    ("host-userinfo", get("/api/summary", headers={"Host": "127.0.0.1:8765@evil.example"}), 400),
    ("host-evil-write", decide('{"item_id": 1, "label": 1}', headers={**JSON, "Host": "evil.example"}), 400),
    # --- traversal and junk in every parameter
    ("image-dotdot", get("/image/../../etc/passwd"), 404),
    ("image-encoded-dotdot", get("/image/..%2F..%2Fetc%2Fpasswd"), 404),
    ("image-absolute", get("/image/%2Fetc%2Fpasswd"), 404),
    ("image-huge-id", get("/image/99999999999999999999999"), 404),
    ("image-0", get("/image/0"), 404),
    ("image-suffix", get("/image/1.png"), 404),
    ("history-huge-id", get("/api/history/99999999999999999999999"), 404),
    ("history-dotdot", get("/api/history/..%2F1"), 404),
    ("static-dotdot", get("/static/../../../etc/passwd"), 404),
    ("static-encoded", get("/static/..%2F..%2Fpyproject.toml"), 404),
    ("queue-traversal", get("/api/queue", params={"queue": "../../etc/passwd"}), 400),
    ("queue-nul", get("/api/queue", params={"queue": "all\x00"}), 400),
    ("queue-markup", get("/api/queue", params={"queue": "<script>alert(1)</script>"}), 400),
    ("cls-1e30", get("/api/queue", params={"cls": "1e30"}), 400),
    ("cls-float", get("/api/queue", params={"cls": "1.5"}), 400),
    ("cls-huge", get("/api/queue", params={"cls": "99999999999999999999"}), 400),
    ("cls-negative", get("/api/queue", params={"cls": "-1"}), 400),
    ("cls-past-classes", get("/api/queue", params={"cls": "4"}), 400),
    ("cls-path", get("/api/queue", params={"cls": "../1"}), 400),
    ("offset-float", get("/api/queue", params={"offset": "1e3"}), 400),
    ("offset-huge", get("/api/queue", params={"offset": "99999999999999999999"}), 400),
    ("limit-word", get("/api/queue", params={"limit": "all"}), 400),
    ("limit-underscore", get("/api/queue", params={"limit": "1_0"}), 400),
    # --- methods
    ("decide-by-get", get("/api/decide", params={"item_id": 1, "label": 1, "token": TOKEN}), 405),
    ("undo-by-get", get("/api/undo", params={"token": TOKEN}), 405),
]


def test_the_table_is_broad():
    kinds = {case[0].split("-")[0] for case in CASES}
    assert len(CASES) >= 40 and {"id", "label", "deep", "origin", "fetch", "host", "image", "queue",
                                 "cls", "token", "body", "claims"} <= kinds
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("method, path, kwargs, status", [c[1] + (c[2],) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_hostile_request_is_a_one_line_4xx_and_writes_nothing(client, reader, method, path, kwargs, status):
    before = written(reader)
    r = client.request(method, path, **kwargs)
    assert r.status_code == status, r.text[:300]
    text = r.text.strip()
    assert text and "\n" not in text and len(text) < 400, text[:300]
    assert "Traceback" not in text and "root:" not in text
    if r.headers.get("content-type", "").startswith("application/json"):
        assert set(r.json()) == {"error"}
    assert written(reader) == before


def test_the_page_own_requests_still_write(db, tmp_path):
    """The refusals above are not the page refusing everything: what its JS and a form send pass."""
    path = make_store(tmp_path)
    app = create_app(path, None, token=TOKEN, port=PORT, who="tester")
    with TestClient(app, base_url=BASE) as c, LabelStore(path, create=False) as s:
        browser = {**JSON, "Origin": BASE, "Sec-Fetch-Site": "same-origin"}
        assert c.post("/api/decide", json={"item_id": 1, "label": 2}, headers=browser).status_code == 200
        typed = {**JSON, "Origin": "http://localhost:8765", "Sec-Fetch-Site": "none"}
        assert c.post("/api/decide", json={"item_id": 2, "action": "keep"}, headers=typed).status_code == 200
        form = c.post("/api/decide", data={"item_id": "3", "label": "1", "token": TOKEN})
        assert form.status_code == 200
        body = b'{"item_id": 4, "label": 0, "pad": "' + b"x" * (MAX_BODY_BYTES - 100) + b'"}'
        assert c.post("/api/decide", content=body, headers=JSON).status_code == 200  # under the limit
        assert c.post("/api/undo", json={}, headers=browser).json()["undone"]["key"] == KEYS[3]
        humans = s.events(source="human")  # the store's earlier decision on item 4, then the page's
        assert humans["item_id"].tolist() == [4, 1, 2, 3] and humans["label"].tolist() == [2, 2, 1, 1]
        q = c.get("/api/queue", params={"queue": "all", "cls": "3", "offset": "0", "limit": "5"})
        assert q.status_code == 200 and q.json()["cls"] == 3


def test_a_wildcard_bind_takes_the_host_header_as_its_origin(tmp_path):
    """Bound to 0.0.0.0 the page's outside names are unknown: a write's Origin must match its Host."""
    path = make_store(tmp_path)
    app = create_app(path, None, token=TOKEN, host="0.0.0.0", port=PORT)
    with TestClient(app, base_url="http://192.168.1.5:8765") as c, LabelStore(path, create=False) as s:
        before = written(s)
        evil = c.post("/api/decide", json={"item_id": 1, "label": 2}, headers={**OK, "Origin": "http://evil.example"})
        assert evil.status_code == 403 and "evil.example" in evil.json()["error"]
        assert written(s) == before
        own = c.post("/api/decide", json={"item_id": 1, "label": 2},
                     headers={**OK, "Origin": "http://192.168.1.5:8765"})
        assert own.status_code == 200 and written(s) != before


def test_markup_in_names_and_keys_stays_data(client):
    info = client.get("/api/summary")
    assert info.headers["content-type"] == "application/json" and info.json()["classes"] == CLASSES
    items = client.get("/api/queue", params={"queue": "all"}).json()["items"]
    assert [i["key"] for i in items] == KEYS
    page = client.get("/")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # The page's JS writes data with textContent only: no HTML parsing of anything it fetched.
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in REVIEW_JS


@pytest.fixture
def server(tmp_path):
    """A real uvicorn server in a thread on a free port of 127.0.0.1: (base URL, store path)."""
    import uvicorn

    path = make_store(tmp_path)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    app = create_app(path, tmp_path / "images.npz", token=TOKEN, port=port, who="http")
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", path
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_5mb_body_is_refused_over_real_http(server, chunked):
    base, path = server
    big = b'{"item_id": 1, "label": 1, "pad": "' + b"x" * (5 << 20) + b'"}'
    # Chunked uploads carry no Content-Length: the server counts while reading and stops at the limit.
    content = (big[i:i + 65536] for i in range(0, len(big), 65536)) if chunked else big
    with LabelStore(path, create=False) as s:
        before = written(s)
        r = httpx.post(base + "/api/decide", content=content, headers=JSON, timeout=30)
        assert r.status_code == 413 and "limit" in r.json()["error"]
        assert written(s) == before
        # The server still answers, and still writes a proper decision.
        assert httpx.get(base + "/api/summary", timeout=5).status_code == 200
        ok = httpx.post(base + "/api/decide", json={"item_id": 2, "label": 3}, headers=OK, timeout=5)
        assert ok.status_code == 200 and ok.json()["item"]["label"] == 3


@pytest.mark.browser
def test_markup_is_shown_as_text_in_chromium(server, chromium_path):
    from conftest import CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    base, _ = server
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(review_url("127.0.0.1", int(base.rsplit(":", 1)[1]), TOKEN) + "&queue=all")
            page.wait_for_selector(".card.selected")
            assert page.title() == "pseudolabel review"
            assert page.locator(".card .key").all_inner_texts() == KEYS
            # Had a key or class name been parsed as HTML, these elements would exist.
            assert page.locator("#grid img:not([src^='/image/']), #grid .key *, script:not([src])").count() == 0
            assert CLASSES[0] in page.locator("#cls").inner_text()
            assert CLASSES[1] in page.locator(".card .lab b").nth(1).inner_text()
        finally:
            browser.close()
    assert errors == []
