"""Request body reading and field validation (strict: wrong types are errors, never coerced)."""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

from starlette.requests import Request

from .errors import ApiError, invalid

_MISSING = object()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


async def read_json(request: Request, max_bytes: int) -> Any:
    """Read and parse a JSON body: 415 wrong type, 413 too large, 400 malformed."""
    ctype = request.headers.get("content-type")
    if ctype is None:
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json (header missing)")
    mime = ctype.split(";", 1)[0].strip().lower()
    if mime != "application/json" and not (mime.startswith("application/") and mime.endswith("+json")):
        raise ApiError(415, "unsupported_media_type", f"Content-Type must be application/json, got '{mime[:64]}'")
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise ApiError(400, "invalid_header", "Content-Length is not an integer") from None
        if declared > max_bytes:
            raise ApiError(413, "body_too_large", f"request body exceeds {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise ApiError(413, "body_too_large", f"request body exceeds {max_bytes} bytes")
    if not body.strip():
        raise ApiError(400, "invalid_json", "request body is empty (a JSON object is expected)")
    try:
        return _DECODER.decode(body.decode("utf-8"))  # RFC 8259: JSON text exchanged is UTF-8
    except RecursionError:
        raise ApiError(400, "invalid_json", "malformed JSON: nested too deeply") from None
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "malformed JSON: body is not valid UTF-8") from None
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"malformed JSON: {exc}") from None


# Unicode categories refused in identifiers: controls, format characters (bidi overrides and
# isolates, zero-width characters, BOM, soft hyphen), line/paragraph separators, surrogates.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def shown(value: str, limit: int = 64) -> str:
    """``value`` safe for an error message or a log line: characters that are not printable
    (controls, format characters, lone surrogates) as escapes, at most ``limit`` characters."""
    out = "".join(
        c if c.isprintable() else (f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
        for c in value[:limit]
    )
    return out + "..." if len(value) > limit else out


def _number(value: int | float) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text)} characters)"


def require_object(data: Any, allowed: tuple[str, ...], what: str = "request body") -> dict:
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_type", f"{what} must be a JSON object")
    for key in data:
        if key not in allowed:
            raise ApiError(
                422, "unknown_field", f"unknown field '{shown(key)}' in {what} (allowed: {', '.join(allowed)})"
            )
    return data


def identifier_problem(value: str) -> str | None:
    """Why ``value`` cannot be an identifier: it holds a control, invisible-formatting or
    separator character (categories Cc, Cf, Zl, Zp, Cs), or None."""
    for i, c in enumerate(value):
        if unicodedata.category(c) in _INVISIBLE_CATEGORIES:
            return f"control and invisible formatting characters are not allowed (U+{ord(c):04X} at position {i})"
    return None


def get_str(
    data: dict, field: str, *, required: bool, max_len: int, label: str | None = None
) -> str | None:
    label = label or field
    value = data.get(field, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise invalid(label, "is required", "missing_field")
        return None
    if not isinstance(value, str):
        raise invalid(label, f"must be a string, got {_json_type(value)}", "invalid_type")
    if not value.strip():
        raise invalid(label, "must not be empty", "empty_field")
    if len(value) > max_len:
        raise invalid(label, f"must be at most {max_len} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON allows "\udc00"; text cannot hold it
        raise invalid(label, f"is not valid Unicode text (lone surrogate U+{ord(value[exc.start]):04X}"
                             f" at position {exc.start})") from None
    return value


def get_bool(data: dict, field: str) -> bool | None:
    value = data.get(field, _MISSING)
    if value is _MISSING or value is None:
        return None
    if not isinstance(value, bool):
        raise invalid(field, f"must be a boolean, got {_json_type(value)}", "invalid_type")
    return value


def get_int(data: dict, field: str, lo: int, hi: int) -> int | None:
    value = data.get(field, _MISSING)
    if value is _MISSING or value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field, f"must be an integer, got {_json_type(value)}", "invalid_type")
    if not lo <= value <= hi:
        raise invalid(field, f"must be between {lo} and {hi}, got {_number(value)}")
    return value


def get_float(data: dict, field: str, lo: float, hi: float) -> float | None:
    value = data.get(field, _MISSING)
    if value is _MISSING or value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(field, f"must be a number, got {_json_type(value)}", "invalid_type")
    # compare before converting: float() of a 400-digit integer raises OverflowError
    if (isinstance(value, float) and not math.isfinite(value)) or not lo <= value <= hi:
        raise invalid(field, f"must be between {lo:g} and {hi:g}, got {_number(value)}")
    return float(value)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"
