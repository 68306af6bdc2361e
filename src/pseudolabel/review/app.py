"""The review web page: a small Starlette app over a LabelStore.

Security, for a page that writes labels and runs on a person's machine:

* it binds 127.0.0.1 unless told otherwise;
* every request whose Host header is not the bound address is refused with 400, so a web page
  elsewhere cannot reach it through DNS rebinding;
* every write needs the per-launch token (header ``X-Review-Token`` or a ``token`` field in the
  JSON or form body), which only the printed URL carries, so a cross-site form cannot write;
* every write must come from the page itself: an ``Origin`` header, when sent, must be one of the
  served addresses and a ``Sec-Fetch-Site`` header, when sent, ``same-origin`` or ``none``;
* the checks that need headers only (Host, Origin, a token header) run before the body is read, and
  no body is read past :data:`MAX_BODY_BYTES` (413);
* item ids, labels and query numbers are whole numbers of 64 bits or a 4xx, never a guess
  (``1.9``, ``true`` and ``"1"`` in JSON are refused); JSON nested in the body is refused;
* images are looked up by item id in the store; no path is ever taken from a URL;
* a write's reviewer (``who``) is 1-40 printable characters without markup or a 400.

Every refusal is a 4xx with a one-line message, and nothing is written to the store.
"""
from __future__ import annotations

import getpass
import hmac
import json
import math
import re
import secrets
import socket
import sys
import threading
import webbrowser
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from pseudolabel.exceptions import DataError, InputError, StoreError
from pseudolabel.review.images import ImageSource, open_image_source
from pseudolabel.review.page import INDEX_HTML, REVIEW_CSS, REVIEW_JS
from pseudolabel.store import QUEUES, LabelStore, queue as make_queue

__all__ = ["create_app", "serve", "review_url", "allowed_hosts_for", "valid_reviewer", "MAX_BODY_BYTES"]

#: The largest request body the page reads; a decision is well under 100 bytes.
MAX_BODY_BYTES = 64 * 1024
_INT64_MAX = 2**63 - 1  # SQLite's INTEGER
_WHOLE = re.compile(r"-?[0-9]{1,19}")  # form fields and query parameters: plain ASCII digits only
_FETCH_SITES = ("same-origin", "none")
#: What a reviewer's name may not hold: markup and quoting characters (it is shown back on pages).
_MARKUP = set("<>&\"'`\\")
WHO_MAX = 40  # "none": typed into the address bar, never a cross-site page

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_WILDCARD = ("0.0.0.0", "::", "")
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # the URL carries the token
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; frame-ancestors 'none'",
}


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def allowed_hosts_for(host: str, port: int) -> set[str] | None:
    """The Host header values accepted for a server bound to ``host:port``; None (any) for a
    wildcard bind, where the machine's outside names are unknown and only the token protects."""
    if host in _WILDCARD:
        return None
    names = _LOOPBACK if host in _LOOPBACK else (host,)
    allowed = {_host_port(h, port).lower() for h in names}
    if port == 80:  # browsers leave out the default port
        allowed |= {(f"[{h}]" if ":" in h else h).lower() for h in names}
    return allowed


def review_url(host: str, port: int, token: str) -> str:
    """The address to open, with the per-launch token: ``http://127.0.0.1:8765/?token=...``."""
    shown = "127.0.0.1" if host in _WILDCARD else host
    return f"http://{_host_port(shown, port)}/?token={token}"


class HostCheckMiddleware:
    """Refuse (400) any request whose Host header is not one of ``allowed`` (DNS rebinding)."""

    def __init__(self, app, allowed: set[str] | None) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket") and self.allowed is not None:
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
            if host not in self.allowed:
                response = PlainTextResponse(
                    f"Host {_short(host)} is not this review server; open {sorted(self.allowed)[0]}.",
                    status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


def _whole_or_none(value) -> int | None:
    """A nullable integer column's value (pandas reads it as a float, NaN where NULL)."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return None
    return int(value)


def _record(row: dict) -> dict:
    return {k: _jsonable(v) for k, v in row.items()}


def _error(message: str, status: int) -> JSONResponse:
    # One line whatever the message quotes (a store path, a repr of the refused value).
    return JSONResponse({"error": " ".join(message.split())}, status_code=status,
                        headers={"Cache-Control": "no-store"})


def _short(value, width: int = 60) -> str:
    """repr of a refused value, cut to ``width`` characters so that a message stays one short line."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's digit limit for str()
        text = f"<{type(value).__name__}>"
    return text if len(text) <= width else text[:width - 3] + "..."


class _Refused(Exception):
    """A request the page refuses: the status and one-line message of the 4xx answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message

    def response(self) -> JSONResponse:
        return _error(self.message, self.status)


def _whole_number(value, name: str, *, form: bool = False) -> int:
    """``value`` as an int of SQLite's 64 bits: a JSON integer, or ASCII digits from a form or query.

    Booleans, floats (``1.9``, ``1e30``), strings in JSON and anything past 64 bits are refused
    rather than rounded: a guessed item id would write a label on the wrong item.
    """
    if form and isinstance(value, str) and _WHOLE.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "digits" if form else "a JSON integer"
        raise _Refused(400, f"{name} must be a whole number ({kind}), got {_short(value)}.")
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise _Refused(400, f"{name} must fit in 64 bits, got {_short(value)}.")
    return value


def valid_reviewer(value) -> str:
    """``value`` as a reviewer's name: a string of 1 to 40 printable characters, no markup
    (``< > & " ' ` \\``), no spaces at either end; anything else is refused, never trimmed or
    guessed, so that one person's decisions stay under one name."""
    if not isinstance(value, str):
        raise _Refused(400, f"who must be a reviewer's name (a string), got {_short(value)}.")
    if not 1 <= len(value) <= WHO_MAX:
        raise _Refused(400, f"who must be 1 to {WHO_MAX} characters, got {len(value)}.")
    if not value.isprintable() or value != value.strip():
        raise _Refused(400, f"who must be printable characters without spaces at either end, got "
                            f"{_short(value)}.")
    if _MARKUP & set(value):
        raise _Refused(400, f"who must not hold markup characters ({' '.join(sorted(_MARKUP))}), got "
                            f"{_short(value)}.")
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _parse_body(raw: bytes, content_type: str) -> tuple[dict, bool]:
    """The body as a flat dict and whether it was a form (its values are strings)."""
    if not raw:
        return {}, False
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json":
        try:
            body = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except RecursionError:
            raise _Refused(400, "the JSON body is nested too deeply; send one flat object such as "
                                '{"item_id": 5, "label": 3}.') from None
        except ValueError as exc:  # also UnicodeDecodeError, NaN/Infinity, ints past 4300 digits
            raise _Refused(400, f"the body is not valid JSON ({_short(str(exc), 80)}); send one flat object "
                                'such as {"item_id": 5, "label": 3}.') from None
        form = False
    elif media == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
        except ValueError as exc:
            raise _Refused(400, f"the form body cannot be read ({_short(str(exc), 80)}).") from None
        body, form = {k: v[-1] for k, v in fields.items()}, True
    else:
        raise _Refused(415, f"Content-Type must be application/json or application/x-www-form-urlencoded, "
                            f"got {_short(content_type)}.")
    if not isinstance(body, dict):
        raise _Refused(400, f"the body must be a JSON object, got a {type(body).__name__}; send e.g. "
                            '{"item_id": 5, "label": 3}.')
    nested = next((k for k, v in body.items() if isinstance(v, (dict, list))), None)
    if nested is not None:
        raise _Refused(400, f"field {_short(nested)} must be a number or a string, not a "
                            f"{type(body[nested]).__name__}.")
    return body, form


class ReviewApp:
    """State and handlers of one review page: the store, the image source, the token."""

    def __init__(self, store: LabelStore, images: ImageSource | None, token: str, who: str,
                 allowed_hosts: set[str] | None = None) -> None:
        self.store, self.images, self.token, self.who = store, images, token, who
        # The page's own origins; None (a wildcard bind): the origin of the request's Host header.
        self.origins = None if allowed_hosts is None else {f"http://{h}" for h in allowed_hosts}
        self._cache: dict = {}
        self._cache_lock = threading.Lock()

    # ---- helpers
    def _version(self) -> tuple:
        # Any write by any process moves one of these: then queues are computed afresh.
        return self.store.revision()

    def queue(self, name: str, cls: int | None):
        key = (name, cls, self._version())
        with self._cache_lock:
            if key in self._cache:
                return self._cache[key]
        df = make_queue(self.store, name, cls=cls)
        with self._cache_lock:
            # Keep the queues of the current version only: older ones can never be asked again.
            self._cache = {k: v for k, v in self._cache.items() if k[2] == key[2]}
            self._cache[key] = df
        return df

    def classes(self) -> list[str]:
        names = self.store.classes
        if names:
            return names
        top = self.store.max_label()
        return [str(i) for i in range((top or 0) + 1)] if top is not None and top >= 0 else []

    def item_state(self, item_id: int) -> dict:
        row = self.store.current_labels(items=[item_id]).iloc[0].to_dict()
        state = _record({k: row[k] for k in ("item_id", "key", "label", "source", "confidence", "human_event",
                                             "who")})
        state["round"] = _whole_or_none(row["round"])
        state["given"] = self.given_labels([item_id]).get(item_id, -1)
        return state

    def given_labels(self, item_ids: list[int]) -> dict[int, int]:
        """The label each item came with: its latest effective ``given`` event (absent: none)."""
        if not item_ids:
            return {}
        given = self.store.events(source="given", items=item_ids, latest=True)
        return dict(zip(given["item_id"].astype(int).tolist(), given["label"].astype(int).tolist()))

    def _enrich(self, rows: list[dict]) -> list[dict]:
        """Add to each queue row what its card shows besides the queue's own columns: the given
        label, and the round and reviewer of the current label."""
        ids = [r["item_id"] for r in rows]
        if not ids:
            return rows
        given = self.given_labels(ids)
        cur = self.store.current_labels(items=ids).set_index("item_id")
        for r in rows:
            c = cur.loc[r["item_id"]]
            r["given"] = given.get(r["item_id"], -1)
            r["round"] = _whole_or_none(c["round"])
            r["who"] = c["who"] if isinstance(c["who"], str) else None
        return rows

    def known_item(self, item_id: int) -> bool:
        return 0 < item_id <= _INT64_MAX and self.store.location(item_id) is not None

    def _token_ok(self, given) -> bool:
        given = given if isinstance(given, str) else ""
        return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self.token.encode())

    def _check_origin(self, request: Request) -> None:
        """403 unless the write comes from this page (a browser sends Origin and Sec-Fetch-Site)."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site.lower() not in _FETCH_SITES:
            raise _Refused(403, f"writes are accepted from the review page itself only; this request "
                                f"came from a {_short(site)} page (Sec-Fetch-Site).")
        origin = request.headers.get("origin")
        if origin is not None:
            own = self.origins if self.origins is not None else {f"http://{request.headers.get('host', '')}"}
            if origin.lower() not in {o.lower() for o in own}:
                raise _Refused(403, f"writes are accepted from the review page itself only, not from origin "
                                    f"{_short(origin)}; open {sorted(own)[0]}.")

    @staticmethod
    async def _read_body(request: Request) -> bytes:
        """The body, never reading past MAX_BODY_BYTES: Content-Length first, then chunk by chunk
        (a chunked upload has no length)."""
        too_big = _Refused(413, f"the request body is over the review page's limit of {MAX_BODY_BYTES} "
                                "bytes; a decision is a few dozen bytes.")
        length = request.headers.get("content-length")
        if length is not None:
            if not _WHOLE.fullmatch(length) or length.startswith("-"):
                raise _Refused(400, f"Content-Length must be a number of bytes, got {_short(length)}.")
            if int(length) > MAX_BODY_BYTES:
                raise too_big
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    async def _checked_write(self, request: Request, what: str) -> tuple[dict, bool]:
        """The body of a write (a flat dict, and whether it came from a form) once every check
        passed; the checks on headers alone come before a byte of the body is read."""
        denied = _Refused(403, f"a valid review token is required to {what}; open the URL printed by "
                               "`pseudolabel review`.")
        self._check_origin(request)
        header = request.headers.get("x-review-token")
        if header is not None and not self._token_ok(header):
            raise denied
        body, form = _parse_body(await self._read_body(request), request.headers.get("content-type", ""))
        if header is None and not self._token_ok(body.get("token")):
            raise denied
        return body, form

    # ---- endpoints
    async def index(self, request: Request) -> Response:
        return HTMLResponse(INDEX_HTML, headers=_HEADERS)

    async def css(self, request: Request) -> Response:
        return Response(REVIEW_CSS, media_type="text/css", headers=_HEADERS)

    async def js(self, request: Request) -> Response:
        return Response(REVIEW_JS, media_type="text/javascript", headers=_HEADERS)

    def summary(self, request: Request) -> Response:
        counts = {name: int(len(self.queue(name, None))) for name in QUEUES}
        default = next((q for q in ("suspects", "audit", "active") if counts[q]), "all")
        return JSONResponse({"classes": self.classes(), "queues": counts, "default_queue": default,
                             "who": self.who, "store": self.store.path.name}, headers=_HEADERS)

    def queue_page(self, request: Request) -> Response:
        p = request.query_params
        name = p.get("queue", "all")
        if name not in QUEUES:
            return _error(f"queue must be one of {', '.join(QUEUES)}, got {_short(name)}.", 400)
        try:
            cls, offset, limit = (None if p.get(k, "") == "" else _whole_number(p[k], k, form=True)
                                  for k in ("cls", "offset", "limit"))
        except _Refused as exc:
            return exc.response()
        n_classes = len(self.classes())
        if cls is not None and (cls < 0 or (n_classes and cls >= n_classes)):
            known = f"0..{n_classes - 1}" if n_classes else ">= 0"
            return _error(f"cls must be a class index ({known}), got {cls}.", 400)
        df = self.queue(name, cls)
        offset = min(max(0, offset or 0), len(df))
        limit = 120 if limit is None else min(1000, max(1, limit))
        hint = None
        if not len(df):
            hint = {"suspects": "No cleaning suggestions in this store: run `pseudolabel clean` first.",
                    "audit": "No accepted pseudo labels in this store: run `pseudolabel selftrain` first.",
                    "active": "No unlabeled items with model predictions in this store.",
                    "all": "This store holds no items."}[name]
            if cls is not None:
                hint = f"No items of class {cls} in this queue."
        cols = ["item_id", "key", "label", "source", "suggestion", "confidence", "score", "reason",
                "baseline", "human_event", "reviewed"]
        page = df.iloc[offset:offset + limit]
        rows = [_record(r) for r in page[cols].to_dict("records")]
        runs = page["run_id"].tolist() if "run_id" in page else [None] * len(rows)
        for r, run in zip(rows, runs):
            r["suggestion_run"] = run if isinstance(run, str) else None
        rows = self._enrich(rows)
        return JSONResponse({"queue": name, "cls": cls, "total": int(len(df)),
                             "reviewed": int(df["reviewed"].sum()) if len(df) else 0,
                             "offset": offset, "items": rows, "hint": hint}, headers=_HEADERS)

    def reviewers(self, request: Request) -> Response:
        """Who decided how many (effective decisions: undone ones are left out), per source of the
        item's label before people (given, pseudo, corrected, or none), and for each pair of
        reviewers the items both decided and the share where their latest labels agree."""
        human = self.store.events(source="human")
        base = self.store.events(source=("given", "pseudo", "corrected"), latest=True)
        base_source = dict(zip(base["item_id"].astype(int).tolist(), base["source"].tolist()))
        human = human.assign(who=[w if isinstance(w, str) else "" for w in human["who"]],
                             base=[base_source.get(int(i), "none") for i in human["item_id"]])
        people = []
        for who, rows in human.groupby("who", sort=True):
            people.append({"who": who or None, "decisions": int(len(rows)),
                           "items": int(rows["item_id"].nunique()),
                           "by_source": {k: int(v) for k, v in rows["base"].value_counts().sort_index().items()},
                           "last_at": rows["created_at"].iloc[-1]})
        latest = {who: dict(zip(rows["item_id"].astype(int), rows["label"].astype(int)))
                  for who, rows in human.groupby("who", sort=True)}  # events are oldest first: last wins
        names, pairs = sorted(latest), []
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                shared = sorted(set(latest[a]) & set(latest[b]))
                if not shared:
                    continue
                agree = sum(latest[a][k] == latest[b][k] for k in shared)
                pairs.append({"a": a or None, "b": b or None, "shared": len(shared), "agree": int(agree),
                              "agreement": agree / len(shared)})
        return JSONResponse({"reviewers": people, "pairs": pairs, "decisions": int(len(human))},
                            headers=_HEADERS)

    def history(self, request: Request) -> Response:
        item_id = request.path_params["item_id"]
        if not self.known_item(item_id):
            return _error(f"no item with id {_short(item_id)} in this store.", 404)
        events = self.store.history(item_id)
        return JSONResponse({"item_id": item_id, "events": [_record(e) for e in events]}, headers=_HEADERS)

    def image(self, request: Request) -> Response:
        item_id = request.path_params["item_id"]
        location = self.store.location(item_id) if 0 < item_id <= _INT64_MAX else None
        if location is None:
            return PlainTextResponse(f"no item with id {_short(item_id)} in this store.", status_code=404)
        if self.images is None:
            return PlainTextResponse("no image source: start the review page with --images PATH.", status_code=404)
        try:
            data = self.images.png(location)
        except DataError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        return Response(data, media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"})

    async def decide(self, request: Request) -> Response:
        try:
            body, form = await self._checked_write(request, "record decisions")
            action = body.get("action", "set")
            if action not in ("set", "accept", "keep"):
                raise _Refused(400, f"action must be set, accept or keep, got {_short(action)}.")
            needed = ("item_id",) if action == "keep" else ("item_id", "label")
            missing = [k for k in needed if k not in body]
            if missing:
                raise _Refused(400, f"a decision needs {' and '.join(missing)}; send e.g. "
                                    '{"item_id": 5, "label": 3}.')
            item_id = _whole_number(body["item_id"], "item_id", form=form)
            label = None if action == "keep" else _whole_number(body["label"], "label", form=form)
            who = self._who(body)
        except _Refused as exc:
            return exc.response()
        return await self._run(self._decide, item_id, label, action, who)

    def _who(self, body: dict) -> str:
        """The reviewer of a write: the body's ``who`` (checked), else the name the page was
        started with (``--who``, the login name)."""
        return valid_reviewer(body["who"]) if "who" in body else self.who

    def _decide(self, item_id: int, label: int | None, action: str, who: str) -> Response:
        if not self.known_item(item_id):
            return _error(f"no item with id {item_id} in this store.", 404)
        try:
            if action == "keep":
                # Keeping confirms the current label as a person's decision.
                label = int(self.store.current_labels(items=[item_id])["label"].iloc[0])
                if label < 0:
                    return _error("this item has no label to keep; press a digit to set one.", 400)
            elif label < 0:
                return _error(f"label must be a class index >= 0, got {label}.", 400)
            self.store.add_labels([item_id], [label], "human", who=who, note=action)
        except InputError as exc:
            status = 404 if "unknown item" in str(exc) else 400
            return _error(str(exc), status)
        except StoreError as exc:  # locked by another writer past the busy timeout, read-only file
            return _error(str(exc), 503)
        return JSONResponse({"ok": True, "item": self.item_state(item_id)}, headers=_HEADERS)

    async def undo(self, request: Request) -> Response:
        try:
            body, _ = await self._checked_write(request, "undo")
            who = self._who(body)
        except _Refused as exc:
            return exc.response()
        return await self._run(self._undo, who)

    def _undo(self, who: str) -> Response:
        """Take back the latest decision of ``who`` only: another reviewer's stays."""
        try:
            event = self.store.undo(who=who, note="review page")
        except StoreError as exc:
            return _error(str(exc), 503)
        if event is None:
            return JSONResponse({"undone": None, "item": None}, headers=_HEADERS)
        return JSONResponse({"undone": _record(event), "item": self.item_state(event["item_id"])},
                            headers=_HEADERS)

    @staticmethod
    async def _run(fn, *args) -> Response:
        # SQLite calls block: keep them off the event loop.
        return await run_in_threadpool(fn, *args)


def create_app(store_path: str | Path | LabelStore, images=None, *, token: str,
               host: str = "127.0.0.1", port: int = 8765, who: str | None = None,
               allowed_hosts: set[str] | None = None) -> Starlette:
    """The review page as an ASGI app over an existing label store.

    Parameters
    ----------
    store_path : str, Path or LabelStore
        The store (it must exist).
    images : path, "digits", mapping of arrays, ImageSource or None
        Where the images are; None uses the store's ``images`` meta value when set.
    token : str
        The per-launch secret that every write must carry.
    host, port : the address the server binds; requests for any other Host are refused.
    who : str, optional
        Recorded as ``who`` of a write that names no reviewer (default: the login name); the page
        sends the name its reviewer entered as the ``who`` field of every write, and ``/api/undo``
        takes back the latest decision of that reviewer only.
    allowed_hosts : set of "host:port", optional
        Overrides the Host headers accepted (default: from host and port).

    Examples
    --------
    >>> from starlette.testclient import TestClient                           # doctest: +SKIP
    >>> app = create_app("labels.db", "mnist.npz", token="s3cret", port=8765)   # doctest: +SKIP
    >>> TestClient(app, base_url="http://127.0.0.1:8765").get("/api/summary")  # doctest: +SKIP
    """
    if not token:
        raise InputError("the review page needs a non-empty token; pass token=secrets.token_urlsafe().")
    store = store_path if isinstance(store_path, LabelStore) else LabelStore(store_path, create=False)
    store.verify()  # read whole once: a damaged store is refused at start, not request by request
    if images is None and store.get_meta("images"):
        images = store.get_meta("images")
    source = open_image_source(images, base=store.path.parent)
    if who is None:
        try:
            who = getpass.getuser()
        except (KeyError, OSError):
            who = "reviewer"
    hosts = allowed_hosts if allowed_hosts is not None else allowed_hosts_for(host, port)
    state = ReviewApp(store, source, token, who, allowed_hosts=hosts)
    routes = [
        Route("/", state.index),
        Route("/static/review.css", state.css),
        Route("/static/review.js", state.js),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/api/summary", state.summary),
        Route("/api/queue", state.queue_page),
        Route("/api/history/{item_id:int}", state.history),
        Route("/api/reviewers", state.reviewers),
        Route("/image/{item_id:int}", state.image),
        Route("/api/decide", state.decide, methods=["POST"]),
        Route("/api/undo", state.undo, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.review = state
    app.add_middleware(HostCheckMiddleware, allowed=hosts)
    return app


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {_host_port(host, port)} ({exc.strerror}); pass another --port "
                         "or stop the program that uses it.") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(store_path: str | Path, images=None, host: str = "127.0.0.1", port: int = 8765,
          open_browser: bool = False, *, token: str | None = None, who: str | None = None) -> None:
    """Serve the review page until Ctrl+C, after printing its URL (with the per-launch token).

    ``port=0`` picks a free port. Binding anything but loopback prints a warning: the page is then
    reachable from the network, protected by the token only.

    Examples
    --------
    >>> serve("runs/clean/labels.db", images="mnist.npz")   # doctest: +SKIP
    review page: http://127.0.0.1:8765/?token=...
    """
    token = token or secrets.token_urlsafe(24)
    sock = _bind(host, port)
    try:
        port = sock.getsockname()[1]
        app = create_app(store_path, images, token=token, host=host, port=port, who=who)
        if host not in _LOOPBACK:
            print(f"warning: the review page listens on {host}, reachable from other machines; "
                  "anyone with the URL can change labels.", file=sys.stderr)
        url = review_url(host, port, token)
        print(f"review page: {url}", flush=True)
        print("press Ctrl+C to stop", flush=True)
        if open_browser:
            webbrowser.open(url)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        server.run(sockets=[sock])
    finally:
        sock.close()
