"""Checks of the review page's requests: bodies, whole numbers, reviewer names, and the
one-line 4xx answer of a refusal. See :mod:`pseudolabel.review.app` for the rules they enforce."""
from __future__ import annotations

import json
import re
from urllib.parse import parse_qs

from starlette.responses import JSONResponse

__all__ = ["MAX_BODY_BYTES", "INT64_MAX", "WHOLE", "WHO_MAX", "MAX_BULK", "Refused", "error", "short",
           "whole_number", "whole_numbers", "fraction", "valid_reviewer", "parse_body"]

#: The largest request body the page reads; a decision is well under 100 bytes.
MAX_BODY_BYTES = 64 * 1024
INT64_MAX = 2**63 - 1  # SQLite's INTEGER
WHOLE = re.compile(r"-?[0-9]{1,19}")  # form fields and query parameters: plain ASCII digits only
_FRACTION = re.compile(r"(0(\.[0-9]{1,6})?|1(\.0{1,6})?|\.[0-9]{1,6})")  # a number in [0, 1], plain digits
#: What a reviewer's name may not hold: markup and quoting characters (it is shown back on pages).
_MARKUP = set("<>&\"'`\\")
WHO_MAX = 40
#: The most items one bulk decision may name: one transaction, a body well under MAX_BODY_BYTES.
MAX_BULK = 500


def error(message: str, status: int) -> JSONResponse:
    # One line whatever the message quotes (a store path, a repr of the refused value).
    return JSONResponse({"error": " ".join(message.split())}, status_code=status,
                        headers={"Cache-Control": "no-store"})


def short(value, width: int = 60) -> str:
    """repr of a refused value, cut to ``width`` characters so that a message stays one short line."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's digit limit for str()
        text = f"<{type(value).__name__}>"
    return text if len(text) <= width else text[:width - 3] + "..."


class Refused(Exception):
    """A request the page refuses: the status and one-line message of the 4xx answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message

    def response(self) -> JSONResponse:
        return error(self.message, self.status)


def whole_number(value, name: str, *, form: bool = False) -> int:
    """``value`` as an int of SQLite's 64 bits: a JSON integer, or ASCII digits from a form or query.

    Booleans, floats (``1.9``, ``1e30``), strings in JSON and anything past 64 bits are refused
    rather than rounded: a guessed item id would write a label on the wrong item.
    """
    if form and isinstance(value, str) and WHOLE.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "digits" if form else "a JSON integer"
        raise Refused(400, f"{name} must be a whole number ({kind}), got {short(value)}.")
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise Refused(400, f"{name} must fit in 64 bits, got {short(value)}.")
    return value


def valid_reviewer(value) -> str:
    """``value`` as a reviewer's name: a string of 1 to 40 printable characters, no markup
    (``< > & " ' ` \\``), no spaces at either end; anything else is refused, never trimmed or
    guessed, so that one person's decisions stay under one name."""
    if not isinstance(value, str):
        raise Refused(400, f"who must be a reviewer's name (a string), got {short(value)}.")
    if not 1 <= len(value) <= WHO_MAX:
        raise Refused(400, f"who must be 1 to {WHO_MAX} characters, got {len(value)}.")
    if not value.isprintable() or value != value.strip():
        raise Refused(400, f"who must be printable characters without spaces at either end, got "
                            f"{short(value)}.")
    if _MARKUP & set(value):
        raise Refused(400, f"who must not hold markup characters ({' '.join(sorted(_MARKUP))}), got "
                            f"{short(value)}.")
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_body(raw: bytes, content_type: str, lists: tuple[str, ...] = ()) -> tuple[dict, bool]:
    """The body as a flat dict and whether it was a form (its values are strings). The fields
    named in ``lists`` may hold one flat JSON list (of numbers or strings, checked by the caller)."""
    if not raw:
        return {}, False
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json":
        try:
            body = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except RecursionError:
            raise Refused(400, "the JSON body is nested too deeply; send one flat object such as "
                                '{"item_id": 5, "label": 3}.') from None
        except ValueError as exc:  # also UnicodeDecodeError, NaN/Infinity, ints past 4300 digits
            raise Refused(400, f"the body is not valid JSON ({short(str(exc), 80)}); send one flat object "
                                'such as {"item_id": 5, "label": 3}.') from None
        form = False
    elif media == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
        except ValueError as exc:
            raise Refused(400, f"the form body cannot be read ({short(str(exc), 80)}).") from None
        body, form = {k: v[-1] for k, v in fields.items()}, True
    else:
        raise Refused(415, f"Content-Type must be application/json or application/x-www-form-urlencoded, "
                            f"got {short(content_type)}.")
    if not isinstance(body, dict):
        raise Refused(400, f"the body must be a JSON object, got a {type(body).__name__}; send e.g. "
                            '{"item_id": 5, "label": 3}.')
    nested = next((k for k, v in body.items() if isinstance(v, (dict, list))
                   and not (k in lists and isinstance(v, list)
                            and not any(isinstance(x, (dict, list)) for x in v))), None)
    if nested is not None:
        raise Refused(400, f"field {short(nested)} must be a number or a string, not a "
                            f"{type(body[nested]).__name__}.")
    return body, form



def whole_numbers(values, name: str, *, form: bool = False, most: int = MAX_BULK) -> list[int]:
    """``values`` as a list of 1 to ``most`` distinct whole numbers: a JSON list of integers, or
    in a form comma-separated digits (``"3,17,42"``); each checked as :func:`whole_number`."""
    if form and isinstance(values, str):
        values = values.split(",") if values else []
    if not isinstance(values, list):
        raise Refused(400, f"{name} must be a list of whole numbers, got {short(values)}.")
    if not 1 <= len(values) <= most:
        raise Refused(400, f"{name} must name 1 to {most} items, got {len(values)}; send them in parts.")
    out = [whole_number(v, f"each of {name}", form=form) for v in values]
    if len(set(out)) != len(out):
        twice = next(v for v in out if out.count(v) > 1)
        raise Refused(400, f"{name} names item {twice} twice; name each item once.")
    return out


def fraction(value, name: str) -> float:
    """A query parameter in [0, 1] written with plain digits (``0.95``, ``1``, ``.5``); anything
    else (``nan``, ``1e-3``, ``2``) is refused."""
    if not isinstance(value, str) or not _FRACTION.fullmatch(value):
        raise Refused(400, f"{name} must be a number from 0 to 1 such as 0.95, got {short(value)}.")
    return float(value)
