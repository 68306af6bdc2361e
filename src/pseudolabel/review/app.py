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
* a bulk decision (``/api/bulk``) names 1 to :data:`MAX_BULK` distinct item ids (JSON integers,
  the only list a body may hold), is refused whole when any item does not qualify, and is written
  in one transaction; an accepted suggestion is looked up here, never taken from the request;
* images and table rows are looked up by item id in the store; no path is ever taken from a URL;
* a write's reviewer (``who``) is 1-40 printable characters without markup or a 400.

Every refusal is a 4xx with a one-line message, and nothing is written to the store.
"""
from __future__ import annotations

import getpass
import hmac
import math
import secrets
import socket
import sys
import threading
import webbrowser
from pathlib import Path

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from pseudolabel.exceptions import DataError, InputError, StoreError
from pseudolabel.review.checks import (
    INT64_MAX, MAX_BODY_BYTES, MAX_BULK, WHOLE, Refused as _Refused, error as _error, fraction,
    parse_body as _parse_body, short as _short, valid_reviewer, whole_number as _whole_number, whole_numbers,
)
from pseudolabel.review.images import ImageSource, open_image_source
from pseudolabel.review.items import TableRows, is_table
from pseudolabel.review.views import (
    DECIDED_FILTERS, QUEUE_JOB, SORTS, SOURCE_FILTERS, narrow, reviewer_summary, run_feedback,
)
from pseudolabel.review.page import INDEX_HTML, REVIEW_CSS, REVIEW_JS
from pseudolabel.store import QUEUES, LabelStore, queue as make_queue

__all__ = ["create_app", "serve", "review_url", "allowed_hosts_for", "valid_reviewer", "MAX_BODY_BYTES"]

_INT64_MAX = INT64_MAX
_WHOLE = WHOLE
_FETCH_SITES = ("same-origin", "none")  # "none": typed into the address bar, never a cross-site page
_ACTIONS = ("set", "accept", "keep", "reject")
#: Items the active queue's diversity option spreads (picked from the 5x most uncertain).
DIVERSE_BATCH = 100

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


def _choice(value: str | None, name: str, allowed) -> str | None:
    """A query parameter that must be one of ``allowed`` (None when not given)."""
    if value is not None and value not in allowed:
        raise _Refused(400, f"{name} must be one of {', '.join(allowed)}, got {_short(value)}.")
    return value


def _record(row: dict) -> dict:
    return {k: _jsonable(v) for k, v in row.items()}



class ReviewApp:
    """State and handlers of one review page: the store, the image source, the token."""

    def __init__(self, store: LabelStore, images: ImageSource | None, token: str, who: str,
                 allowed_hosts: set[str] | None = None, rows: TableRows | None = None) -> None:
        self.store, self.images, self.token, self.who = store, images, token, who
        self.rows = rows  # a table's rows: the items are rows, not images
        # The page's own origins; None (a wildcard bind): the origin of the request's Host header.
        self.origins = None if allowed_hosts is None else {f"http://{h}" for h in allowed_hosts}
        self._cache: dict = {}
        self._cache_lock = threading.Lock()

    # ---- helpers
    def _version(self) -> tuple:
        # Any write by any process moves one of these: then queues are computed afresh.
        return self.store.revision()

    def queue(self, name: str, cls: int | None, diverse: bool = False):
        diverse = diverse and name == "active"
        key = (name, cls, self._version(), diverse)
        with self._cache_lock:
            if key in self._cache:
                return self._cache[key]
        options = {"diverse": DIVERSE_BATCH} if diverse else {}
        df = make_queue(self.store, name, cls=cls, **options)
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

    def item_states(self, item_ids: list[int]) -> list[dict]:
        """:meth:`item_state` of many items, read at once."""
        cur = self.store.current_labels(items=item_ids).set_index("item_id")
        given = self.given_labels(item_ids)
        out = []
        for i in item_ids:
            row = cur.loc[i]
            state = _record({"item_id": i, **{k: row[k] for k in ("key", "label", "source", "confidence",
                                                                   "human_event", "who")}})
            state["round"], state["given"] = _whole_or_none(row["round"]), given.get(i, -1)
            out.append(state)
        return out

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

    async def _checked_write(self, request: Request, what: str, lists: tuple[str, ...] = ()) -> tuple[dict, bool]:
        """The body of a write (a flat dict, and whether it came from a form) once every check
        passed; the checks on headers alone come before a byte of the body is read."""
        denied = _Refused(403, f"a valid review token is required to {what}; open the URL printed by "
                               "`pseudolabel review`.")
        self._check_origin(request)
        header = request.headers.get("x-review-token")
        if header is not None and not self._token_ok(header):
            raise denied
        body, form = _parse_body(await self._read_body(request), request.headers.get("content-type", ""), lists)
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
        frames = {name: self.queue(name, None) for name in QUEUES}
        counts = {name: int(len(df)) for name, df in frames.items()}
        default = next((q for q in ("suspects", "audit", "active") if counts[q]), "all")
        # Per queue: decided / total, and the human decisions on its items the last run of the
        # job that uses them took in, and those made since (not yet used).
        human, runs = self.store.events(source="human"), self.store.runs()
        progress = {name: {"total": counts[name], "decided": int(df["reviewed"].sum()) if len(df) else 0,
                           "feedback": run_feedback(human, runs, df["item_id"], QUEUE_JOB[name])}
                    for name, df in frames.items()}
        return JSONResponse({"classes": self.classes(), "queues": counts, "default_queue": default,
                             "progress": progress, "content": "row" if self.rows is not None else "image",
                             "diverse_batch": DIVERSE_BATCH, "max_bulk": MAX_BULK,
                             "who": self.who, "store": self.store.path.name}, headers=_HEADERS)

    def queue_page(self, request: Request) -> Response:
        p = request.query_params
        name = p.get("queue", "all")
        if name not in QUEUES:
            return _error(f"queue must be one of {', '.join(QUEUES)}, got {_short(name)}.", 400)
        try:
            cls, offset, limit = (None if p.get(k, "") == "" else _whole_number(p[k], k, form=True)
                                  for k in ("cls", "offset", "limit"))
            view = {k: _choice(p.get(k, "") or None, k, allowed)
                    for k, allowed in (("source", SOURCE_FILTERS), ("decided", DECIDED_FILTERS), ("sort", SORTS))}
            view["sort"] = view["sort"] or "queue"
            view["min_confidence"] = None if p.get("min_confidence", "") == "" else fraction(p["min_confidence"],
                                                                                            "min_confidence")
            diverse = _choice(p.get("diverse", "") or None, "diverse", ("0", "1")) == "1"
        except _Refused as exc:
            return exc.response()
        n_classes = len(self.classes())
        if cls is not None and (cls < 0 or (n_classes and cls >= n_classes)):
            known = f"0..{n_classes - 1}" if n_classes else ">= 0"
            return _error(f"cls must be a class index ({known}), got {cls}.", 400)
        whole = self.queue(name, cls, diverse)
        df = narrow(whole, **view)
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
            if len(whole):
                hint = "No items of this queue pass the filters."
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
                             "queue_total": int(len(whole)),
                             "queue_reviewed": int(whole["reviewed"].sum()) if len(whole) else 0,
                             "diverse": diverse and name == "active", "offset": offset, "items": rows,
                             "hint": hint},
                            headers=_HEADERS)

    def reviewers(self, request: Request) -> Response:
        """Who decided how many (effective decisions: undone ones are left out), per source of the
        item's label before people (given, pseudo, corrected, or none), and for each pair of
        reviewers the items both decided and the share where their latest labels agree."""
        human = self.store.events(source="human")
        base = self.store.events(source=("given", "pseudo", "corrected"), latest=True)
        people, pairs = reviewer_summary(human, base)
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
            large = _choice(request.query_params.get("size"), "size", ("large",)) == "large"
        except _Refused as exc:
            return PlainTextResponse(exc.message, status_code=exc.status)
        try:
            data = self.images.png(location, large)
        except DataError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        return Response(data, media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"})

    async def decide(self, request: Request) -> Response:
        try:
            body, form = await self._checked_write(request, "record decisions")
            action = body.get("action", "set")
            if action not in _ACTIONS:
                raise _Refused(400, f"action must be {', '.join(_ACTIONS[:-1])} or reject, got {_short(action)}.")
            needed = ("item_id",) if action in ("keep", "reject") else ("item_id", "label")
            missing = [k for k in needed if k not in body]
            if missing:
                raise _Refused(400, f"a decision needs {' and '.join(missing)}; send e.g. "
                                    '{"item_id": 5, "label": 3}.')
            item_id = _whole_number(body["item_id"], "item_id", form=form)
            label = None if action in ("keep", "reject") else _whole_number(body["label"], "label", form=form)
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
            elif action == "reject":
                label = -1  # "none of these": a person's decision that no class fits (the store's -1)
            elif label < 0:
                return _error(f"label must be a class index >= 0, got {label}.", 400)
            self.store.add_labels([item_id], [label], "human", who=who, note=action)
        except InputError as exc:
            status = 404 if "unknown item" in str(exc) else 400
            return _error(str(exc), status)
        except StoreError as exc:  # locked by another writer past the busy timeout, read-only file
            return _error(str(exc), 503)
        return JSONResponse({"ok": True, "item": self.item_state(item_id)}, headers=_HEADERS)

    async def bulk(self, request: Request) -> Response:
        """One decision for up to MAX_BULK items, written in one transaction: ``accept`` takes each
        item's suggestion in ``queue`` (looked up here, not sent), ``set`` one ``label``, ``keep``
        each current label, ``reject`` -1. Nothing is written unless every item qualifies."""
        try:
            body, form = await self._checked_write(request, "record decisions", lists=("item_ids",))
            action = body.get("action", "accept")
            if action not in _ACTIONS:
                raise _Refused(400, f"action must be {', '.join(_ACTIONS[:-1])} or reject, got {_short(action)}.")
            needed = ("item_ids",) + {"set": ("label",), "accept": ("queue",)}.get(action, ())
            missing = [k for k in needed if k not in body]
            if missing:
                raise _Refused(400, f"a bulk {action} needs {' and '.join(missing)}; send e.g. "
                                    '{"action": "accept", "queue": "audit", "item_ids": [5, 9]}.')
            ids = whole_numbers(body["item_ids"], "item_ids", form=form)
            label = _whole_number(body["label"], "label", form=form) if action == "set" else None
            name = body.get("queue") if action == "accept" else None
            if action == "accept" and name not in QUEUES:
                raise _Refused(400, f"queue must be one of {', '.join(QUEUES)}, got {_short(name)}.")
            who = self._who(body)
        except _Refused as exc:
            return exc.response()
        return await self._run(self._bulk, ids, action, label, name, who)

    def _bulk(self, ids: list[int], action: str, label: int | None, name: str | None, who: str) -> Response:
        unknown = next((i for i in ids if not self.known_item(i)), None)
        if unknown is not None:
            return _error(f"no item with id {unknown} in this store; nothing was written.", 404)
        if action == "accept":
            df = self.queue(name, None)
            suggested = dict(zip(df["item_id"].astype(int).tolist(), df["suggestion"].astype(int).tolist()))
            lacking = next((i for i in ids if suggested.get(i, -1) < 0), None)
            if lacking is not None:
                return _error(f"item {lacking} has no suggestion in the {name} queue; nothing was written.", 400)
            labels = [suggested[i] for i in ids]
        elif action == "keep":
            current = self.store.current_labels(items=ids)
            labels = current.set_index("item_id").loc[ids, "label"].astype(int).tolist()
            if min(labels) < 0:
                return _error(f"item {ids[labels.index(min(labels))]} has no label to keep; nothing was written.", 400)
        elif action == "reject":
            labels = [-1] * len(ids)
        else:
            if label < 0:
                return _error(f"label must be a class index >= 0, got {label}.", 400)
            labels = [label] * len(ids)
        try:
            written = self.store.add_labels(ids, labels, "human", who=who, note=f"bulk {action}")
        except InputError as exc:
            return _error(str(exc), 400)
        except StoreError as exc:
            return _error(str(exc), 503)
        return JSONResponse({"ok": True, "written": int(written), "items": self.item_states(ids)}, headers=_HEADERS)

    def item(self, request: Request) -> Response:
        """What an item shows besides its labels: ``{"kind": "image"}`` (fetch /image/ID) or, for a
        table's rows, ``{"kind": "row", "row": N, "columns": [{"name", "value", "text"}]}``."""
        item_id = request.path_params["item_id"]
        location = self.store.location(item_id) if 0 < item_id <= _INT64_MAX else None
        if location is None:
            return _error(f"no item with id {_short(item_id)} in this store.", 404)
        if self.rows is None:
            return JSONResponse({"item_id": item_id, "kind": "image"}, headers=_HEADERS)
        try:
            content = self.rows.row(location)
        except DataError as exc:
            return _error(str(exc), 404)
        return JSONResponse({"item_id": item_id, "kind": "row", **content}, headers=_HEADERS)

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
        Where the images are; None uses the store's ``images`` meta value when set. A ``.csv`` or
        ``.parquet`` file makes the items rows of that table (locations ``row:N``), shown as their
        columns, a long string cell as a paragraph (text items).
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
    rows = None
    if is_table(images):  # a table's rows (text items among them): shown as columns, not images
        path = Path(images)
        if not path.is_absolute() and not path.exists() and (store.path.parent / path).exists():
            path = store.path.parent / path
        rows, images = TableRows(path), None
    source = open_image_source(images, base=store.path.parent)
    if who is None:
        try:
            who = getpass.getuser()
        except (KeyError, OSError):
            who = "reviewer"
    hosts = allowed_hosts if allowed_hosts is not None else allowed_hosts_for(host, port)
    state = ReviewApp(store, source, token, who, allowed_hosts=hosts, rows=rows)
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
        Route("/api/bulk", state.bulk, methods=["POST"]),
        Route("/api/item/{item_id:int}", state.item),
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
