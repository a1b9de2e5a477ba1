"""The HTTP server around the app: uvicorn's configuration, request-head limits, log setup.

Request-head limits. uvicorn's default protocol (httptools) has no bound on the request line or
the headers: httptools gathers each header in memory until it is complete, so a 25 MB header is
read whole (and every concurrent one too) before the app sees anything; nothing at the ASGI level
can help, the memory is spent by then. uvicorn's ``h11_max_incomplete_event_size`` bounds only
the h11 protocol. ``HeadLimitedProtocol`` counts the bytes received while a request head (request
line + headers) is incomplete and feeds the parser at most ``max_header_bytes`` of it; past that,
or past ``max_headers`` header fields, the request is answered 431 (JSON) without reaching the
app, and the connection is closed. These requests carry no route, so they are logged (warning)
but not counted in ``aether_http_requests_total``, like malformed HTTP that uvicorn refuses.

Access log. Query strings are logged with the values of credential-like parameters
(``api_key``, ``token``, ``password``, ...) replaced by ``[REDACTED]``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import unquote_plus

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .config import Settings

# After a refusal the connection stays half-open this long, reading and discarding what the
# client still sends, so that the client can read the 431 instead of a connection reset.
REFUSAL_LINGER_SECONDS = 2.0

REDACTED = "[REDACTED]"
# parameter names that look like credentials (searched, case-insensitively, in the decoded name)
_CREDENTIAL_NAME_RE = re.compile(
    r"key|token|secret|passw|pwd|auth|credential|signature|session|cookie|jwt|bearer", re.IGNORECASE
)
_PARAM_RE = re.compile(r"([^&;=]*)=([^&;]*)")


def redact_query_string(target: str) -> str:
    """``target`` (path?query, as uvicorn logs it) with credential-like parameter values hidden."""
    path, sep, query = target.partition("?")
    if not sep:
        return target

    def hide(match: re.Match) -> str:
        name = match.group(1)
        if _CREDENTIAL_NAME_RE.search(unquote_plus(name)):
            return f"{name}={REDACTED}"
        return match.group(0)

    # a value may itself contain "=" (base64): everything up to the next & or ; is the value
    return f"{path}?{_PARAM_RE.sub(hide, query)}"


class RedactQueryFilter(logging.Filter):
    """On the ``uvicorn.access`` logger: '%s - "%s %s HTTP/%s" %d' with args (client, method,
    path?query, version, status); the path argument is redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = args[:2] + (redact_query_string(args[2]),) + args[3:]
        return True


def log_config(level: str) -> dict:
    """Everything to stdout, one line per record; no keys in request lines (headers only, and
    credential-like query parameters redacted)."""
    lvl = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        },
        "filters": {"redact_query": {"()": RedactQueryFilter}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "default",
            },
        },
        "loggers": {
            "aetherlink": {"handlers": ["stdout"], "level": lvl, "propagate": False},
            "uvicorn": {"handlers": ["stdout"], "level": lvl, "propagate": False},
            "uvicorn.access": {
                "handlers": ["stdout"], "level": lvl, "propagate": False, "filters": ["redact_query"],
            },
        },
    }


class HeadLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded request heads (see the module docstring).

    The byte budget is per request head: it starts when the previous request on the connection
    is complete. A head that arrives in the same read as the end of the previous request is
    counted from the next read on, so the effective bound is below twice the limit.
    """

    max_header_bytes = 16384
    max_headers = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # no request yet, or the previous one is complete
        self._head_bytes = 0
        self._refused = False
        self._linger = None

    def data_received(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._refused:
            if self._in_head:
                room = self.max_header_bytes - self._head_bytes
                if room <= 0:
                    self._refuse(f"the request head (request line and headers) exceeds {self.max_header_bytes} bytes")
                    return
                piece, view = view[:room], view[room:]
                self._head_bytes += len(piece)
            else:
                piece, view = view, view[:0]
            super().data_received(piece)
            if self.transport.is_closing():
                return

    # Parser callbacks. After a refusal the parser may still run to the end of the current
    # piece of data: nothing of it reaches the app (data_received feeds no more after that).
    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._refused:
            return
        if len(self.headers) > self.max_headers:
            self._refuse(f"the request has more than {self.max_headers} header fields")
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def _refuse(self, reason: str) -> None:
        self._refused = True
        self.logger.warning("refused a request from %s: %s (431)", _peer(self.client), reason)
        body = json.dumps({"error": {"code": "request_header_fields_too_large", "message": reason}}).encode()
        head = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body),
                 b"connection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        # Half-close and keep reading (discarding) for a moment: closing with unread data would
        # send a reset that can destroy the answer before the client has read it.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger = self.loop.call_later(REFUSAL_LINGER_SECONDS, self.transport.close)
        else:  # pragma: no cover (TCP transports can)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)


def _peer(client: tuple[str, int] | None) -> str:
    return "%s:%d" % client if client else "unknown client"


def head_limited_protocol(max_header_bytes: int, max_headers: int) -> type[HeadLimitedProtocol]:
    return type("HeadLimitedProtocol", (HeadLimitedProtocol,),
                {"max_header_bytes": max_header_bytes, "max_headers": max_headers})


def uvicorn_options(settings: Settings, *, access_log: bool = True) -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.run`` (or ``uvicorn.Config``) for serving the app."""
    return {
        "host": settings.listen_host,
        "port": settings.port,
        "http": head_limited_protocol(settings.max_header_bytes, settings.max_headers),
        "log_config": log_config(settings.log_level),
        "access_log": access_log,
        "server_header": False,
        "proxy_headers": False,
        "timeout_graceful_shutdown": 10,
    }
