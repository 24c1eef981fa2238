"""A lean HTTP/1.1 connection pool for provider calls, as an ``httpx`` transport.

``ProviderTransport`` implements ``httpx.AsyncBaseTransport``: it takes an
``httpx.Request`` and returns an ``httpx.Response`` whose body streams from the
connection, so callers keep httpx's API and exception types
(``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``, ``WriteError``,
``ReadError``, ``ReadTimeout``, ``RemoteProtocolError``). The relay uses its
``send(method, url, headers, body)``, the same exchange without building an
``httpx.Request``. The bytes on the wire are ``http11_wire``'s business.

Why not httpcore: on the benchmark, httpcore + h11 took a third of the gateway's
CPU per request. Its pool scans every pooled connection on each request and each
release, and h11 writes a request in three pieces. Here a request is one
``send_all`` of bytes built in one pass; the pool is a stack of idle connections
(most recently used first); the response head is parsed with ``bytes.split``; and
a chunked body is decoded per socket read, so everything one read brought is
yielded as one piece (fewer, larger writes downstream, nothing held back).

What it does not do, because provider calls never need it: HTTP/2, proxies,
``Expect: 100-continue``, upgrades, request trailers. It is not a general client;
the dashboard and model lists keep httpx's own transport.

Rules it keeps:

- An idle connection is reused only if it has not expired (``keepalive_expiry``)
  and nothing is waiting to be read, on the socket or inside the TLS layer (a
  closed or misbehaving server). Expired ones are closed when next looked at.
- A reused connection is retried once on a new connection only when it is
  certain the provider did not act on the request: the write failed, or the
  connection closed before any response byte and the request may be replayed
  (GET, HEAD, OPTIONS, or an ``Idempotency-Key`` header). A chat POST that may
  have reached the provider is never sent again: that could bill it twice.
- A connection goes back to the pool only after its whole body was read and
  neither side said ``Connection: close``. Closing a response early drops it.
- ``max_connections`` bounds connections in use; waiting for one is bounded by the
  ``pool`` timeout. Timeouts come from the request's ``timeout`` extension when
  present; a read timeout applies to each socket read, a write timeout to sending
  the request. The gateway's relay puts its own deadlines around the exchange and
  sends no read or write timeout.
"""

from __future__ import annotations

import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from math import inf

import httpx
import trio

from .http11_wire import (
    ChunkedDecoder,
    Framing,
    framing,
    parse_head,
    serialize,
    serialize_parts,
)

READ_SIZE = 65536
#: The largest response head (status line + headers) accepted.
MAX_HEAD = 64 * 1024

_CLOSE_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class _Connection:
    __slots__ = ("buf", "expires", "origin", "socket", "stream")

    def __init__(
        self, stream: trio.abc.Stream, socket: trio.socket.SocketType, origin: tuple[str, str, int]
    ) -> None:
        self.stream = stream
        self.socket = socket
        self.origin = origin
        self.buf = bytearray()
        self.expires = 0.0

    async def fill(self, read_limit: float, request: httpx.Request | None) -> None:
        """Append one read to ``buf``; EOF raises ``RemoteProtocolError``."""
        data = await _receive(self.stream, read_limit, request)
        if not data:
            raise httpx.RemoteProtocolError(
                "provider closed the connection mid-response", request=request
            )
        self.buf += data

    def close(self) -> None:
        """Drop the connection at once (no TLS goodbye; nothing waits on it)."""
        self.socket.close()


async def _receive(
    stream: trio.abc.Stream, read_limit: float, request: httpx.Request | None
) -> bytes:
    """One read (``b""`` at EOF), bounded by ``read_limit`` seconds."""
    try:
        if read_limit == inf:
            return bytes(await stream.receive_some(READ_SIZE))
        with trio.fail_after(read_limit):
            return bytes(await stream.receive_some(READ_SIZE))
    except trio.TooSlowError as exc:
        raise httpx.ReadTimeout("timed out reading from provider", request=request) from exc
    except _CLOSE_ERRORS as exc:
        raise httpx.ReadError(f"read failed: {exc.__class__.__name__}", request=request) from exc


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    scheme = url.scheme
    return scheme, url.host, url.port or (443 if scheme == "https" else 80)


def _default_timeouts(connect: float) -> tuple[float, float, float, float]:
    """(pool, connect, read, write) when the caller sets none: the connect timeout
    bounds both the wait for a free connection and connecting; reads and writes are
    the caller's to bound (the relay does)."""
    return connect, connect, inf, inf


def _timeouts(request: httpx.Request, connect: float) -> tuple[float, float, float, float]:
    """(pool, connect, read, write) in seconds from the ``timeout`` extension;
    ``inf`` where unset."""
    t = request.extensions.get("timeout")
    if not t:
        return _default_timeouts(connect)

    def get(key: str, default: float) -> float:
        value = t.get(key)
        return default if value is None else float(value)

    return get("pool", inf), get("connect", connect), get("read", inf), get("write", inf)


_REPLAYABLE = frozenset(("GET", "HEAD", "OPTIONS"))


def _replayable(method: str, headers: Mapping[str, str] | httpx.Headers) -> bool:
    """Whether sending the request twice is harmless (RFC 9110 9.2.2)."""
    return method in _REPLAYABLE or any(k.lower() == "idempotency-key" for k in headers)


def _tls_buffered(stream: trio.abc.Stream) -> bool:
    """Bytes the TLS layer already read but nobody asked for (a stray record after a
    response). trio has no public API for it; these are its SSLStream internals."""
    ssl_object = getattr(stream, "_ssl_object", None)
    incoming = getattr(stream, "_incoming", None)
    return bool(ssl_object is not None and ssl_object.pending()) or bool(
        incoming is not None and incoming.pending
    )


class _Body(httpx.AsyncByteStream):
    """The response body; gives the connection back (or drops it) when done."""

    __slots__ = ("_conn", "_done", "_framing", "_pool", "_read_timeout", "_request")

    def __init__(
        self,
        pool: ProviderTransport,
        conn: _Connection,
        framing: Framing,
        request: httpx.Request | None,
        read_timeout: float,
    ) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self._framing = framing
        self._request = request
        self._read_timeout = read_timeout
        self._done = framing.length == 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None or self._done:
            return
        buf = conn.buf
        timeout, request = self._read_timeout, self._request
        framing = self._framing
        try:
            if framing.chunked:
                decoder = ChunkedDecoder()
                while True:
                    out = decoder.feed(buf, request)
                    if out:
                        yield b"".join(out)
                    if decoder.done:
                        break
                    await conn.fill(timeout, request)
            elif framing.length is not None:
                left = framing.length
                while True:
                    if buf:
                        piece = bytes(buf[:left])
                        del buf[: len(piece)]
                        left -= len(piece)
                        yield piece
                    if not left:
                        break
                    await conn.fill(timeout, request)
            else:  # until the provider closes the connection
                if buf:
                    yield bytes(buf)
                    buf.clear()
                while data := await _receive(conn.stream, timeout, request):
                    yield data
        except BaseException:
            self._finish(keep=False)  # sync, so safe on GeneratorExit too
            raise
        self._done = True

    async def aclose(self) -> None:
        conn = self._conn
        self._finish(
            keep=self._done and self._framing.keep_alive and conn is not None and not conn.buf
        )

    def _finish(self, keep: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool._release(conn, keep)  # closes it unless pooled


class ProviderTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 to one or more origins, at most ``max_connections`` in use at once."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        max_connections: int,
        connect_timeout: float,
        keepalive_expiry: float = 30.0,
    ) -> None:
        ssl_context.set_alpn_protocols(["http/1.1"])
        self._ssl = ssl_context
        self._slots = trio.Semaphore(max_connections)
        self._max = max_connections
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._connect_timeout = connect_timeout
        self._routes: dict[str, tuple[tuple[str, str, int], str]] = {}
        self._keepalive_expiry = keepalive_expiry
        self._closed = False

    def statistics(self) -> dict[str, int]:
        """Connections in use and idle."""
        idle = sum(len(q) for q in self._idle.values())
        return {"in_use": self._max - self._slots.value, "idle": idle}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """httpx's entry point."""
        if self._closed:
            raise httpx.ConnectError("transport closed", request=request)
        body = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
        close = "close" in request.headers.get("connection", "").lower()
        return await self._round_trip(
            _origin(request.url),
            serialize(request, body),
            request.method,
            close,
            _replayable(request.method, request.headers),
            request,
            _timeouts(request, self._connect_timeout),
        )

    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> httpx.Response:
        """The relay's entry point: the same exchange without building an
        ``httpx.Request`` (its header normalisation and URL handling cost more than
        the rest of the request). Adds ``Host`` and ``Content-Length``; the caller
        applies every timeout but the connect one."""
        if self._closed:
            raise httpx.ConnectError("transport closed")
        route = self._routes.get(url)
        if route is None:
            route = self._route(url)
        origin, start = route
        return await self._round_trip(
            origin,
            serialize_parts(method, start, headers, body),
            method,
            False,
            _replayable(method, headers),
            None,
            _default_timeouts(self._connect_timeout),
        )

    def _route(self, url: str) -> tuple[tuple[str, str, int], str]:
        """(origin, "<target> HTTP/1.1 + Host line") for ``url``, parsed once."""
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {parsed.scheme!r}")
        origin = _origin(parsed)
        host = parsed.netloc.decode("ascii")
        route = origin, f"{parsed.raw_path.decode('ascii')} HTTP/1.1\r\nHost: {host}\r\n"
        if len(self._routes) >= 1024:  # a provider uses a handful of URLs
            self._routes.clear()
        self._routes[url] = route
        return route

    async def _round_trip(
        self,
        origin: tuple[str, str, int],
        payload: bytes,
        method: str,
        close: bool,
        replayable: bool,
        request: httpx.Request | None,
        timeouts: tuple[float, float, float, float],
    ) -> httpx.Response:
        """Send ``payload`` on a pooled (or new) connection; return at the response head.
        ``timeouts``: pool, connect, read, write."""
        pool_t, connect_t, read_t, write_t = timeouts
        try:
            self._slots.acquire_nowait()  # the usual case: no cancel scope to build
        except trio.WouldBlock:
            try:
                with trio.fail_after(pool_t):
                    await self._slots.acquire()
            except trio.TooSlowError as exc:
                raise httpx.PoolTimeout(
                    "no free connection to the provider", request=request
                ) from exc
        conn: _Connection | None = None
        try:
            conn = self._take_idle(origin)
            if conn is not None:
                try:
                    head = await self._exchange(
                        conn, payload, request, read_t, write_t, retry=replayable
                    )
                except _Stale:
                    conn.close()
                    conn = None
            if conn is None:
                conn = await self._connect(origin, connect_t, request)
                head = await self._exchange(conn, payload, request, read_t, write_t, retry=None)
            status, reason, version, headers = head
            body = _Body(
                self,
                conn,
                framing(method, close, status, version, headers, request),
                request,
                read_t,
            )
        except BaseException:
            if conn is None:
                self._slots.release()
            else:
                self._release(conn, keep=False)
            raise
        return httpx.Response(
            status,
            headers=headers,
            stream=body,
            extensions={"http_version": version, "reason_phrase": reason},
        )

    def _take_idle(self, origin: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        now = trio.current_time()
        while idle:
            conn = idle.pop()
            if (
                conn.expires > now
                and not conn.socket.is_readable()
                and not _tls_buffered(conn.stream)
            ):
                return conn
            conn.close()  # expired or closed by the server
        return None

    def _release(self, conn: _Connection, keep: bool) -> None:
        """Free the slot; pool ``conn`` if ``keep`` (and the pool is open), else close it."""
        self._slots.release()
        if keep and not self._closed:
            conn.expires = trio.current_time() + self._keepalive_expiry
            self._idle.setdefault(conn.origin, deque()).append(conn)
        else:
            conn.close()

    async def _connect(
        self, origin: tuple[str, str, int], connect_limit: float, request: httpx.Request | None
    ) -> _Connection:
        scheme, host, port = origin
        try:
            with trio.fail_after(connect_limit):
                tcp = await trio.open_tcp_stream(host, port)
                stream: trio.abc.Stream = tcp
                if scheme == "https":
                    tls = trio.SSLStream(
                        tcp, self._ssl, server_hostname=host, https_compatible=True
                    )
                    try:
                        await tls.do_handshake()
                    except BaseException:
                        await trio.aclose_forcefully(tcp)
                        raise
                    stream = tls
        except trio.TooSlowError as exc:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}", request=request) from exc
        except _CLOSE_ERRORS as exc:
            raise httpx.ConnectError(
                f"cannot connect: {exc.__class__.__name__}", request=request
            ) from exc
        return _Connection(stream, tcp.socket, origin)

    async def _exchange(
        self,
        conn: _Connection,
        payload: bytes,
        request: httpx.Request | None,
        read_t: float,
        write_t: float,
        retry: bool | None,
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
        """Send the request and read the response head (skipping 1xx). ``retry`` is None
        on a new connection; on a reused one, raise ``_Stale`` when a write fails, and
        also when it closes before any response byte if ``retry`` (replayable)."""
        try:
            if write_t == inf:  # the relay's calls: it bounds the whole exchange itself
                await conn.stream.send_all(payload)
            else:
                with trio.fail_after(write_t):
                    await conn.stream.send_all(payload)
        except trio.TooSlowError as exc:
            raise httpx.WriteTimeout("timed out writing to provider", request=request) from exc
        except _CLOSE_ERRORS as exc:
            if retry is not None:
                raise _Stale from exc
            raise httpx.WriteError(
                f"write failed: {exc.__class__.__name__}", request=request
            ) from exc
        buf = conn.buf
        answered = False  # any response byte seen (a 1xx counts)
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = parse_head(bytes(buf[:end]), request)
                del buf[: end + 4]
                if head[0] == 101:
                    raise httpx.RemoteProtocolError(
                        "provider switched protocols unasked", request=request
                    )
                if 100 <= head[0] < 200:
                    continue  # informational: the real answer follows
                return head
            if len(buf) > MAX_HEAD:
                raise httpx.RemoteProtocolError(
                    "provider sent too large a response head", request=request
                )
            try:
                data = await _receive(conn.stream, read_t, request)
            except httpx.ReadError:
                if retry and not answered:
                    raise _Stale from None
                raise
            if not data:
                if retry and not answered:
                    raise _Stale
                raise httpx.RemoteProtocolError(
                    "provider disconnected without sending a response", request=request
                )
            answered = True
            buf += data

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for queue in idle.values():
            for conn in queue:
                conn.close()
        await trio.lowlevel.checkpoint()


class _Stale(Exception):
    """A reused connection turned out closed before the response started."""
