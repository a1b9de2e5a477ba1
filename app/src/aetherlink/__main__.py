"""Console entry point: ``aetherlink`` (or ``python -m aetherlink``) runs one uvicorn worker."""

from __future__ import annotations

import argparse
import logging
import logging.config
import sys

from . import __version__
from .config import ConfigError, Settings


def log_config(level: str) -> dict:
    """Everything to stdout, one line per record; request lines never carry keys (headers only)."""
    lvl = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        },
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
            "uvicorn.access": {"handlers": ["stdout"], "level": lvl, "propagate": False},
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="aetherlink",
        description="AetherLink multi-tenant RAG API. Configured by environment variables "
        "(API_ADMIN_KEY required; AETHER_LISTEN_HOST, AETHER_PORT, AETHER_DB_PATH, "
        "AETHER_CACHE_TTL_SECONDS, AETHER_CACHE_MAX_ENTRIES, AETHER_MAX_BODY_BYTES, AETHER_LOG_LEVEL).",
    )
    parser.add_argument("--version", action="version", version=f"aetherlink {__version__}")
    parser.add_argument(
        "--check", action="store_true",
        help="validate the configuration and open the database, then exit (0 = ok)",
    )
    parser.add_argument(
        "--no-access-log", action="store_true", help="do not log one line per request"
    )
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"aetherlink: configuration error: {exc}", file=sys.stderr)
        return 2

    logging.config.dictConfig(log_config(settings.log_level))
    log = logging.getLogger("aetherlink")

    from .app import create_app  # imported late: --version/--help stay fast

    try:
        app = create_app(settings)
    except Exception as exc:  # e.g. unwritable DB directory: say what, not a traceback
        log.error("cannot start: %s: %s", exc.__class__.__name__, exc)
        return 1
    if args.check:
        app.state.service.close()
        print(f"aetherlink: configuration ok ({settings})")
        return 0

    import uvicorn

    uvicorn.run(
        app,
        host=settings.listen_host,
        port=settings.port,
        log_config=log_config(settings.log_level),
        access_log=not args.no_access_log,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
