"""Runtime configuration, read from environment variables only.

| variable                   | default          | meaning                                       |
|----------------------------|------------------|-----------------------------------------------|
| API_ADMIN_KEY              | (required)       | key for the /v1/admin API                     |
| AETHER_LISTEN_HOST         | 0.0.0.0          | address uvicorn binds                         |
| AETHER_PORT                | 8000             | TCP port                                      |
| AETHER_DB_PATH             | ./aetherlink.db  | SQLite file (created if missing)              |
| AETHER_CACHE_TTL_SECONDS   | 300              | answer-cache entry lifetime (0 disables)      |
| AETHER_CACHE_MAX_ENTRIES   | 1024             | answer-cache bound per tenant (0 disables)    |
| AETHER_MAX_BODY_BYTES      | 65536            | largest accepted request body                 |
| AETHER_MAX_HEADER_BYTES    | 16384            | largest request head (request line + headers) |
| AETHER_MAX_HEADERS         | 100              | most header fields in one request             |
| AETHER_METRICS_TOKEN       | (unset: open)    | bearer token that GET /metrics requires       |
| AETHER_LOG_LEVEL           | info             | debug, info, warning, error                   |
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping


class ConfigError(ValueError):
    """Raised when the environment does not describe a usable configuration."""


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# Keys and tokens travel in HTTP header values: only printable ASCII without spaces can be
# presented byte for byte (servers strip surrounding whitespace, and header bytes are not UTF-8).
KEY_MIN, KEY_MAX = 16, 256
KEY_RULE = f"{KEY_MIN}..{KEY_MAX} printable ASCII characters without spaces"
_KEY_RE = re.compile(r"[\x21-\x7e]+")

HEADER_BYTES_MIN, HEADER_BYTES_MAX = 1024, 1024 * 1024
HEADERS_MIN, HEADERS_MAX = 8, 1000


def key_problem(value: str) -> str | None:
    """Why ``value`` can never be presented as a key in a header (None when it can).

    The reason never quotes the value (it is a secret).
    """
    if not KEY_MIN <= len(value) <= KEY_MAX:
        return f"must be {KEY_RULE} (it has {'fewer' if len(value) < KEY_MIN else 'more'} characters)"
    if _KEY_RE.fullmatch(value) is None:
        return f"must be {KEY_RULE} (it contains a space, control or non-ASCII character)"
    return None


@dataclass(frozen=True)
class Settings:
    admin_key: str
    listen_host: str = "0.0.0.0"
    port: int = 8000
    db_path: str = "./aetherlink.db"
    cache_ttl_seconds: float = 300.0
    cache_max_entries: int = 1024
    max_body_bytes: int = 65536
    log_level: str = "info"
    max_header_bytes: int = 16384
    max_headers: int = 100
    metrics_token: str | None = None

    def __post_init__(self) -> None:
        if not self.admin_key or not self.admin_key.strip():
            raise ConfigError(
                "API_ADMIN_KEY is not set or empty: refusing to start without an admin key"
            )
        problem = key_problem(self.admin_key)
        if problem:
            raise ConfigError(f"API_ADMIN_KEY {problem}: refusing to start with an unusable admin key")
        if self.metrics_token is not None:
            problem = key_problem(self.metrics_token)
            if problem:
                raise ConfigError(f"AETHER_METRICS_TOKEN {problem}")
            if self.metrics_token == self.admin_key:
                raise ConfigError("AETHER_METRICS_TOKEN must differ from API_ADMIN_KEY")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"AETHER_PORT must be in 1..65535, got {self.port}")
        if not self.db_path:
            raise ConfigError("AETHER_DB_PATH must not be empty")
        if self.cache_ttl_seconds < 0:
            raise ConfigError("AETHER_CACHE_TTL_SECONDS must be >= 0")
        if self.cache_max_entries < 0:
            raise ConfigError("AETHER_CACHE_MAX_ENTRIES must be >= 0")
        if self.max_body_bytes < 1024:
            raise ConfigError("AETHER_MAX_BODY_BYTES must be >= 1024")
        if not HEADER_BYTES_MIN <= self.max_header_bytes <= HEADER_BYTES_MAX:
            raise ConfigError(
                f"AETHER_MAX_HEADER_BYTES must be in {HEADER_BYTES_MIN}..{HEADER_BYTES_MAX}, got {self.max_header_bytes}"
            )
        if not HEADERS_MIN <= self.max_headers <= HEADERS_MAX:
            raise ConfigError(f"AETHER_MAX_HEADERS must be in {HEADERS_MIN}..{HEADERS_MAX}, got {self.max_headers}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"AETHER_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env

        def _int(name: str, default: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                return int(raw)
            except ValueError:
                raise ConfigError(f"{name} must be an integer, got {raw!r}") from None

        def _float(name: str, default: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {raw!r}") from None
            if value != value or value in (float("inf"), float("-inf")):
                raise ConfigError(f"{name} must be a finite number")
            return value

        return cls(
            admin_key=env.get("API_ADMIN_KEY", ""),
            listen_host=env.get("AETHER_LISTEN_HOST", "").strip() or "0.0.0.0",
            port=_int("AETHER_PORT", 8000),
            db_path=env.get("AETHER_DB_PATH", "").strip() or "./aetherlink.db",
            cache_ttl_seconds=_float("AETHER_CACHE_TTL_SECONDS", 300.0),
            cache_max_entries=_int("AETHER_CACHE_MAX_ENTRIES", 1024),
            max_body_bytes=_int("AETHER_MAX_BODY_BYTES", 65536),
            log_level=(env.get("AETHER_LOG_LEVEL", "").strip().lower() or "info"),
            max_header_bytes=_int("AETHER_MAX_HEADER_BYTES", 16384),
            max_headers=_int("AETHER_MAX_HEADERS", 100),
            # unset or empty: /metrics stays open; anything else is validated, never stripped
            metrics_token=env.get("AETHER_METRICS_TOKEN") or None,
        )

    def __repr__(self) -> str:  # never print the admin key or the metrics token
        return (
            f"Settings(listen_host={self.listen_host!r}, port={self.port}, db_path={self.db_path!r}, "
            f"cache_ttl_seconds={self.cache_ttl_seconds}, cache_max_entries={self.cache_max_entries}, "
            f"max_body_bytes={self.max_body_bytes}, max_header_bytes={self.max_header_bytes}, "
            f"max_headers={self.max_headers}, log_level={self.log_level!r}, admin_key=***, "
            f"metrics_token={'***' if self.metrics_token else None})"
        )

    __str__ = __repr__
