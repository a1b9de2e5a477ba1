"""Request body reading and field validation (strict: wrong types are errors, never coerced)."""

from __future__ import annotations

import json
import math
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


def require_object(data: Any, allowed: tuple[str, ...], what: str = "request body") -> dict:
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_type", f"{what} must be a JSON object")
    for key in data:
        if key not in allowed:
            shown = key if len(key) <= 64 else key[:64] + "..."
            raise ApiError(
                422, "unknown_field", f"unknown field '{shown}' in {what} (allowed: {', '.join(allowed)})"
            )
    return data


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
        raise invalid(field, f"must be between {lo} and {hi}, got {value}")
    return value


def get_float(data: dict, field: str, lo: float, hi: float) -> float | None:
    value = data.get(field, _MISSING)
    if value is _MISSING or value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(field, f"must be a number, got {_json_type(value)}", "invalid_type")
    value = float(value)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise invalid(field, f"must be between {lo:g} and {hi:g}, got {value:g}")
    return value


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
