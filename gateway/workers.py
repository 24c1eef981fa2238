"""``server.workers > 1``: several gateway processes sharing one listening socket.

The parent binds the socket, starts ``workers`` processes (spawned, not forked: each
builds its own app, trio run and connection pools) and waits. On SIGTERM or SIGINT
(to the parent, or to the whole group as systemd sends it) every worker stops
accepting, lets its in-flight requests finish within ``server.graceful_timeout``,
flushes its log writer and exits; the parent exits 0 once all have.

All workers share the SQLite database (WAL; each has one log-writer connection and
retries a busy database). State that lives in memory is per worker: rate limits,
concurrent-stream caps, budget reservations, breakers, the live monitor and
dashboard counters. The README says so; with N workers a limit of R requests per
minute admits up to N x R.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger("gateway.workers")


def serve_workers(config_path: Path, settings: Any, count: int) -> int:
    from . import overrides, users
    from .__main__ import hypercorn_config
    from .db import open_database

    # What must happen once, not once per worker racing the others: the schema, the
    # first admin, the generated session secret.
    db = open_database(settings.database_path)
    users.ensure_default_admin(db)
    db.close()
    overrides.server_secret(settings)

    config: Any = hypercorn_config(settings)
    sockets = config.create_sockets()
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    # Workers inherit "ignore SIGINT" so a terminal's ^C reaches only this process;
    # SIGTERM they handle themselves (systemd signals the whole group).
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    processes = [
        ctx.Process(target=_worker, args=(str(config_path), sockets, stop), daemon=False)
        for _ in range(count)
    ]
    for process in processes:
        process.start()
    signal.signal(signal.SIGINT, previous)

    def on_signal(signum: int, frame: Any) -> None:
        log.info("received %s: stopping %d workers", signal.Signals(signum).name, count)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("started %d workers", count)
    codes = []
    for process in processes:
        process.join()
        codes.append(process.exitcode)
    for sock in sockets.insecure_sockets + sockets.secure_sockets:
        sock.close()
    failed = [c for c in codes if c != 0]
    if failed:
        log.error("workers exited with %s", codes)
    return 1 if failed else 0


def _worker(config_path: str, sockets: Any, stop: EventType) -> None:
    from .__main__ import _load, hypercorn_config
    from .app import create_app
    from .logsetup import setup_logging
    from .web.server import serve

    settings, _ = _load(config_path)
    setup_logging(settings.logging.level, settings.logging.format)
    config: Any = hypercorn_config(settings)
    app = create_app(settings)
    for sock in sockets.secure_sockets + sockets.insecure_sockets:
        sock.listen(config.backlog)

    async def shutdown_trigger() -> None:
        async with trio.open_nursery() as nursery:

            async def on_signal() -> None:
                with trio.open_signal_receiver(signal.SIGTERM) as signals:
                    async for _ in signals:
                        break
                nursery.cancel_scope.cancel()

            async def on_event() -> None:
                while not stop.is_set():  # noqa: ASYNC110 (a multiprocessing event)
                    await trio.sleep(0.1)
                nursery.cancel_scope.cancel()

            nursery.start_soon(on_signal)
            nursery.start_soon(on_event)

    trio.run(lambda: serve(app, config, sockets=sockets, shutdown_trigger=shutdown_trigger))
