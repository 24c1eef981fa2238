"""The ``llm-proxy`` command: serve, check-config, keys, users.

``llm-proxy`` alone is ``llm-proxy serve``. The config file is ``--config PATH``,
else ``$LLM_PROXY_CONFIG``, else ``./config.toml``; a ``.env`` file beside it is
read first (variables already set win). Hypercorn's ``Config`` is built from our
validated ``[server]`` section, never from a mapping hypercorn would accept typos in.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from .errors import ConfigError
from .logsetup import setup_logging
from .settings import Settings, load_settings, read_dotenv

if TYPE_CHECKING:
    from hypercorn.config import Config

log = logging.getLogger("gateway")


def _config_path(arg: str | None) -> Path:
    return Path(arg or os.environ.get("LLM_PROXY_CONFIG") or "config.toml")


def _load(arg: str | None) -> tuple[Settings, list[str]]:
    path = _config_path(arg)
    # Only ./config.toml may be absent (all defaults); a file named on purpose must exist.
    if (arg or os.environ.get("LLM_PROXY_CONFIG")) and not path.exists():
        raise ConfigError(f"{path}: config file not found")
    read_dotenv(path.resolve().parent / ".env", os.environ)
    return load_settings(path)


def hypercorn_config(settings: Settings) -> Config:
    from .web.server import ServerConfig

    config = ServerConfig()
    config.bind = [f"{settings.server.host}:{settings.server.port}"]
    config.graceful_timeout = settings.server.graceful_timeout
    config.keep_alive_timeout = settings.server.keep_alive_timeout
    # Hand hypercorn our loggers: given "-" it adds its own stderr handler, so every
    # line came out twice and, with logging.format = "json", once not as JSON.
    access = logging.getLogger("hypercorn.access")
    config.accesslog = access if settings.server.access_log else None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    return config


async def _serve(settings: Settings, ready: trio.Event | None = None) -> None:
    from .app import create_app
    from .web.server import serve

    app = create_app(settings)  # applies ProxyFixMiddleware when server.trusted_hops > 0
    config = hypercorn_config(settings)

    async def shutdown_trigger() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info(
                    "received %s: finishing in-flight requests (up to %gs)",
                    signal.Signals(signum).name,
                    settings.server.graceful_timeout,
                )
                return

    await serve(app, config, shutdown_trigger=shutdown_trigger)
    log.info("stopped")


def cmd_serve(args: argparse.Namespace) -> int:
    settings, warnings = _load(args.config)
    setup_logging(settings.logging.level, settings.logging.format)
    for w in warnings:
        log.warning("%s", w)
    enabled = sorted(settings.enabled_providers())
    log.info(
        "llm-proxy on http://%s:%d  database=%s  providers=%s",
        settings.server.host,
        settings.server.port,
        settings.database_path,
        ", ".join(enabled) or "none",
    )
    if settings.server.workers > 1:
        from .workers import serve_workers

        return serve_workers(_config_path(args.config), settings, settings.server.workers)
    trio.run(_serve, settings)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    settings, warnings = _load(args.config)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(
        f"{_config_path(args.config)}: ok; providers enabled: "
        f"{', '.join(sorted(settings.enabled_providers())) or 'none'}"
    )
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    import peewee

    from . import auth
    from .db import open_database

    settings, _ = _load(args.config)
    db = open_database(settings.database_path)
    if args.keys_command == "create":
        try:
            key = auth.create_key(db, args.name)
        except peewee.IntegrityError:  # the name is UNIQUE
            print(f"error: a key named {args.name!r} already exists", file=sys.stderr)
            return 1
        print(f"Created client key {args.name!r}. It is shown only now; store it safely:")
        print(key)
        return 0
    if args.keys_command == "revoke":
        if not auth.revoke_key(db, args.name):
            print(f"error: no active key named {args.name!r}", file=sys.stderr)
            return 1
        print(f"Revoked client key {args.name!r}.")
        return 0
    for k in auth.list_keys(db):
        state = "revoked" if k["revoked_at"] else "active"
        print(f"{k['name']}\t{k['prefix']}...\t{state}")
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    from . import users
    from .db import open_database

    settings, _ = _load(args.config)
    return users.cli(open_database(settings.database_path), args)


def build_parser() -> argparse.ArgumentParser:
    # ``--config`` is accepted at every level; SUPPRESS keeps a level that does not
    # see it from resetting what another level parsed.
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help="config file (default: $LLM_PROXY_CONFIG or ./config.toml)",
    )
    parser = argparse.ArgumentParser(
        prog="llm-proxy", description=__doc__.splitlines()[0], parents=[config]
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the gateway (default)", parents=[config])
    sub.add_parser("check-config", help="validate the config and exit", parents=[config])
    keys = sub.add_parser("keys", help="manage client API keys", parents=[config])
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    ksub.add_parser("create", help="create a key; prints it once", parents=[config]).add_argument(
        "name"
    )
    ksub.add_parser("revoke", help="revoke a key", parents=[config]).add_argument("name")
    ksub.add_parser("list", help="list keys (never the keys themselves)", parents=[config])
    from .users import add_parser as add_users_parser

    add_users_parser(sub, config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.config = getattr(args, "config", None)
    command = args.command or "serve"
    try:
        if command == "serve":
            return cmd_serve(args)
        if command == "check-config":
            return cmd_check_config(args)
        if command == "users":
            return cmd_users(args)
        return cmd_keys(args)
    except ConfigError as exc:
        print(f"llm-proxy: configuration error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
