"""The HTTP server loop: hypercorn's protocol stack with a leaner connection task.

``serve`` is hypercorn's trio ``worker_serve`` cut to what the gateway uses
(plain-TCP listeners: TLS is nginx's job; lifespan; graceful shutdown), with one
change: each connection runs ``Connection``, a ``hypercorn.trio.tcp_server.TCPServer``
that keeps the keep-alive timer in one task per connection.

Why: hypercorn stops its idle-timer task when a request arrives and starts a new
one (``nursery.start``) when the answer is sent, for every request. On the
benchmark that was 7% of the gateway's CPU per chat request. Here the timer task
lives as long as the connection and the two transitions only move its cancel
scope's deadline. Also, the empty write h11 produces to end a body of known
length is skipped instead of taking the send lock and a checkpoint.

Behaviour kept: an idle connection is closed after ``keep_alive_timeout`` or at
once when shutdown begins; a busy one finishes its request first (then hypercorn
closes it, as it checks for shutdown before recycling).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from math import inf
from typing import Any
from wsgiref.handlers import format_date_time

import trio
from hypercorn.config import Config, Sockets
from hypercorn.events import RawData, Updated
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState, LifespanState
from hypercorn.utils import ShutdownError, raise_shutdown, repr_socket_addr, wrap_app


class ServerConfig(Config):
    """hypercorn's ``Config``, with the ``date`` header formatted once a second
    instead of for every response."""

    _date: tuple[int, bytes] = (0, b"")

    def response_headers(self, protocol: str) -> list[tuple[bytes, bytes]]:
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, format_date_time(now).encode("ascii"))
        headers = [(b"date", self._date[1])] if self.include_date_header else []
        if self.include_server_header:
            headers.append((b"server", f"hypercorn-{protocol}".encode("ascii")))
        return headers + [(b"alt-svc", h.encode()) for h in self.alt_svc_headers]


class _IdleTimer:
    """Stands in for hypercorn's ``TrioSingleTask`` as a connection's idle timer."""

    __slots__ = ("_deadline", "_gone", "_idle", "_outer", "_scope", "_server", "_started")

    def __init__(self, server: Connection) -> None:
        self._server = server
        self._scope: trio.CancelScope | None = None
        self._outer: trio.CancelScope | None = None
        self._deadline = inf
        self._idle = False
        self._started = False
        self._gone = False

    def cancel(self) -> None:
        """The client has gone: nothing left to time, and nothing to close."""
        self._gone = True
        if self._outer is not None:
            self._outer.cancel()

    async def restart(self, task_group: Any, action: Callable[[], Awaitable[None]]) -> None:
        """The connection became idle (hypercorn's call; ``action`` is not needed)."""
        self._idle = True
        self._deadline = trio.current_time() + self._server.config.keep_alive_timeout
        if not self._started:
            self._started = True
            task_group._nursery.start_soon(self._watch)
        elif self._scope is not None:
            self._scope.deadline = self._deadline
            if self._server.context.terminated.is_set():
                self._scope.cancel()  # parked while busy at shutdown: close now

    async def stop(self) -> None:
        """A request arrived: no idle timeout until it is answered. Only a flag: if the
        old deadline passes while busy, the watcher wakes, sees it, and waits on."""
        self._idle = False

    async def _watch(self) -> None:
        with trio.CancelScope() as self._outer:
            if not self._gone:
                await self._wait_until_idle_too_long()
                with trio.CancelScope(shield=True):
                    await self._server._initiate_server_close()

    async def _wait_until_idle_too_long(self) -> None:
        terminated = self._server.context.terminated
        while True:
            with trio.CancelScope(deadline=self._deadline if self._idle else inf) as scope:
                self._scope = scope
                if terminated.is_set():
                    if self._idle:
                        break
                    await trio.sleep_forever()  # busy at shutdown: wait to become idle
                else:
                    await terminated.wait()
            self._scope = None
            if self._idle and (terminated.is_set() or trio.current_time() >= self._deadline):
                break
        self._scope = None


class Connection(TCPServer):
    """One client connection (see the module docstring for what differs)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.idle_task: _IdleTimer = _IdleTimer(self)  # type: ignore[assignment]

    async def _read_data(self) -> None:
        try:
            await super()._read_data()
        finally:
            # hypercorn leaves its idle timer running after the client closes, and the
            # connection's task group waits for it: the socket sat in CLOSE-WAIT for
            # up to keep_alive_timeout after every client hang-up.
            self.idle_task.cancel()

    async def protocol_send(self, event: Any) -> None:
        if isinstance(event, RawData) and not event.data:
            return  # h11's end of a sized body: nothing to write
        if isinstance(event, Updated):
            if event.idle:
                await self.idle_task.restart(self._task_group, self._idle_timeout)
            else:
                await self.idle_task.stop()
            return
        await super().protocol_send(event)


async def serve(
    app: Any,
    config: Config,
    *,
    sockets: Sockets | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the ASGI ``app`` until ``shutdown_trigger`` returns; requests in flight
    then get ``config.graceful_timeout`` to finish."""
    app = wrap_app(app, config.wsgi_max_body_size, None)
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(app, config, lifespan_state)
    context = WorkerContext(None)

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()

        async with trio.open_nursery() as server_nursery:
            if sockets is None:
                sockets = config.create_sockets()
                for sock in sockets.insecure_sockets:
                    sock.listen(config.backlog)
            listeners = []
            binds = []
            for sock in sockets.insecure_sockets:
                listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
                binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
                await config.log.info(f"Running on {binds[-1]} (CTRL + C to quit)")
            task_status.started(binds)
            handler = partial(
                Connection, app, config, context, ConnectionState(lifespan_state.copy())
            )
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(
                        partial(
                            trio.serve_listeners,
                            handler,
                            listeners,
                            handler_nursery=server_nursery,
                        )
                    )
                    await trio.sleep_forever()
            except BaseExceptionGroup as error:
                _, other = error.split((ShutdownError, KeyboardInterrupt))
                if other is not None:
                    raise other from None
            finally:
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout

        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
