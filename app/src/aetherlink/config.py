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
| AETHER_LOG_LEVEL           | info             | debug, info, warning, error                   |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping


class ConfigError(ValueError):
    """Raised when the environment does not describe a usable configuration."""


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


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

    def __post_init__(self) -> None:
        if not self.admin_key or not self.admin_key.strip():
            raise ConfigError(
                "API_ADMIN_KEY is not set or empty: refusing to start without an admin key"
            )
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
        )

    def __repr__(self) -> str:  # never print the admin key
        return (
            f"Settings(listen_host={self.listen_host!r}, port={self.port}, db_path={self.db_path!r}, "
            f"cache_ttl_seconds={self.cache_ttl_seconds}, cache_max_entries={self.cache_max_entries}, "
            f"max_body_bytes={self.max_body_bytes}, log_level={self.log_level!r}, admin_key=***)"
        )

    __str__ = __repr__
