"""Console entry point: ``aetherlink`` (or ``python -m aetherlink``) runs one uvicorn worker."""

from __future__ import annotations

import argparse
import logging
import logging.config
import sys

from . import __version__
from .config import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="aetherlink",
        description="AetherLink multi-tenant RAG API. Configured by environment variables "
        "(API_ADMIN_KEY required; AETHER_LISTEN_HOST, AETHER_PORT, AETHER_DB_PATH, "
        "AETHER_CACHE_TTL_SECONDS, AETHER_CACHE_MAX_ENTRIES, AETHER_MAX_BODY_BYTES, "
        "AETHER_MAX_HEADER_BYTES, AETHER_MAX_HEADERS, AETHER_METRICS_TOKEN, AETHER_LOG_LEVEL).",
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

    from .server import log_config, uvicorn_options  # imported late: --version/--help stay fast

    logging.config.dictConfig(log_config(settings.log_level))
    log = logging.getLogger("aetherlink")

    from .app import create_app

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

    uvicorn.run(app, **uvicorn_options(settings, access_log=not args.no_access_log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
