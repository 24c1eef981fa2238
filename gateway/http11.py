"""A lean HTTP/1.1 connection pool for provider calls, as an ``httpx`` transport.

``ProviderTransport`` implements ``httpx.AsyncBaseTransport``: it takes an
``httpx.Request`` and returns an ``httpx.Response`` whose body streams from the
connection, so callers keep httpx's API and exception types
(``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``, ``WriteError``,
``ReadError``, ``ReadTimeout``, ``RemoteProtocolError``).

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
  and the socket has nothing to read (a closed or misbehaving server).
- A reused connection that fails before any byte of the response arrives (the
  server closed it just as we sent) is retried once on a new connection.
- A connection goes back to the pool only after its whole body was read and
  neither side said ``Connection: close``. Closing a response early drops it.
- ``max_connections`` bounds open connections; waiting for one is bounded by the
  ``pool`` timeout. Timeouts come from the request's ``timeout`` extension when
  present; a read timeout applies to each socket read. The gateway's relay puts
  its own deadlines around the exchange and sends no read timeout.
"""

from __future__ import annotations

import ssl
from collections import deque
from collections.abc import AsyncIterator
from math import inf

import httpx
import trio

READ_SIZE = 65536
#: The largest response head (status line + headers) accepted.
MAX_HEAD = 64 * 1024
#: The largest chunk-size or trailer line accepted in a chunked body.
MAX_LINE = 8 * 1024

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

    async def fill(self, read_limit: float, request: httpx.Request) -> None:
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


async def _receive(stream: trio.abc.Stream, read_limit: float, request: httpx.Request) -> bytes:
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


def _timeouts(request: httpx.Request, connect: float) -> tuple[float, float, float]:
    """(pool, connect, read) in seconds from the ``timeout`` extension; ``inf`` if unset.

    Without the extension: the transport's connect timeout bounds both the wait
    for a free connection and connecting, and reads are not bounded here.
    """
    t = request.extensions.get("timeout")
    if not t:
        return connect, connect, inf

    def get(key: str, default: float) -> float:
        value = t.get(key)
        return default if value is None else float(value)

    return get("pool", inf), get("connect", connect), get("read", inf)


def _serialize(request: httpx.Request, body: bytes) -> bytes:
    url = request.url
    out = [request.method.encode("ascii"), b" ", url.raw_path, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        if b"\n" in value or b"\r" in value or b"\n" in name or b"\r" in name:
            raise httpx.LocalProtocolError("header contains a line break", request=request)
        out += (name, b": ", value, b"\r\n")
    if body and "content-length" not in request.headers:
        out += (b"Content-Length: ", str(len(body)).encode(), b"\r\n")
    out += (b"\r\n", body)
    return b"".join(out)


def _parse_head(
    head: bytes, request: httpx.Request
) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    """(status, reason, http version, headers) from the bytes before the blank line."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    version = parts[0]
    if len(parts) < 2 or version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise httpx.RemoteProtocolError("provider sent an invalid status line", request=request)
    code = parts[1]
    if len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError("provider sent an invalid status code", request=request)
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise httpx.RemoteProtocolError("provider sent an invalid header line", request=request)
        headers.append((name, value.strip(b" \t")))
    return int(code), parts[2] if len(parts) > 2 else b"", version, headers


class _Framing:
    """How the body ends: ``length`` bytes, ``chunked``, or at EOF (``length`` None)."""

    __slots__ = ("chunked", "keep_alive", "length")

    def __init__(self, chunked: bool, length: int | None, keep_alive: bool) -> None:
        self.chunked = chunked
        self.length = length
        self.keep_alive = keep_alive


def _framing(
    request: httpx.Request, status: int, version: bytes, headers: list[tuple[bytes, bytes]]
) -> _Framing:
    te: bytes | None = None
    lengths: set[bytes] = set()
    connection = b""
    for name, value in headers:
        lname = name.lower()
        if lname == b"transfer-encoding":
            te = value.lower() if te is None else te + b"," + value.lower()
        elif lname == b"content-length":
            lengths.update(v.strip() for v in value.split(b","))
        elif lname == b"connection":
            connection += b"," + value.lower()
    tokens = {t.strip() for t in connection.split(b",")}
    keep_alive = b"close" not in tokens and (version == b"HTTP/1.1" or b"keep-alive" in tokens)
    if "close" in request.headers.get("connection", "").lower():
        keep_alive = False
    if request.method == "HEAD" or status in (204, 304):
        return _Framing(False, 0, keep_alive)
    if te is not None:
        if te.rsplit(b",", 1)[-1].strip() == b"chunked":
            return _Framing(True, None, keep_alive)
        return _Framing(False, None, False)
    if lengths:
        (value,) = lengths if len(lengths) == 1 else (b"x",)
        if not value.isdigit():
            raise httpx.RemoteProtocolError(
                "provider sent an invalid Content-Length", request=request
            )
        return _Framing(False, int(value), keep_alive)
    return _Framing(False, None, False)


class _ChunkedDecoder:
    """Incremental chunked-body decoder over a connection's buffer."""

    __slots__ = ("done", "left", "state")

    SIZE, DATA, DATA_END, TRAILER = range(4)

    def __init__(self) -> None:
        self.state = self.SIZE
        self.left = 0
        self.done = False

    def feed(self, buf: bytearray, request: httpx.Request) -> list[bytes]:
        """Consume what ``buf`` holds; return the body bytes decoded from it."""
        out: list[bytes] = []
        while buf and not self.done:
            if self.state == self.DATA:
                take = min(self.left, len(buf))
                out.append(bytes(buf[:take]))
                del buf[:take]
                self.left -= take
                if not self.left:
                    self.state = self.DATA_END
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > MAX_LINE:
                    raise httpx.RemoteProtocolError("chunked body line too long", request=request)
                break
            line = bytes(buf[:end])
            del buf[: end + 2]
            if self.state == self.SIZE:
                size = line.split(b";", 1)[0].strip()
                try:
                    self.left = int(size, 16)
                except ValueError:
                    raise httpx.RemoteProtocolError(
                        "provider sent an invalid chunk size", request=request
                    ) from None
                if self.left < 0:
                    raise httpx.RemoteProtocolError(
                        "provider sent an invalid chunk size", request=request
                    )
                self.state = self.DATA if self.left else self.TRAILER
            elif self.state == self.DATA_END:
                if line:
                    raise httpx.RemoteProtocolError("chunk data overran its size", request=request)
                self.state = self.SIZE
            elif not line:  # TRAILER: a blank line ends the body
                self.done = True
        return out


class _Body(httpx.AsyncByteStream):
    """The response body; gives the connection back (or drops it) when done."""

    __slots__ = ("_conn", "_done", "_framing", "_pool", "_read_timeout", "_request")

    def __init__(
        self,
        pool: ProviderTransport,
        conn: _Connection,
        framing: _Framing,
        request: httpx.Request,
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
                decoder = _ChunkedDecoder()
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
            self._pool._release(conn, keep)
            if not keep:
                conn.close()


class ProviderTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 to one or more origins, at most ``max_connections`` open at once."""

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
        self._keepalive_expiry = keepalive_expiry
        self._closed = False

    def statistics(self) -> dict[str, int]:
        """Connections in use and idle (for tests and the dashboard)."""
        idle = sum(len(q) for q in self._idle.values())
        return {"in_use": self._max - self._slots.value, "idle": idle}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("transport closed", request=request)
        pool_t, connect_t, read_t = _timeouts(request, self._connect_timeout)
        url = request.url
        scheme = url.scheme
        origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        body = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
        payload = _serialize(request, body)
        try:
            with trio.fail_after(pool_t):
                await self._slots.acquire()
        except trio.TooSlowError as exc:
            raise httpx.PoolTimeout("no free connection to the provider", request=request) from exc
        conn: _Connection | None = None
        try:
            conn = self._take_idle(origin)
            if conn is not None:
                try:
                    head = await self._exchange(conn, payload, request, read_t, reused=True)
                except _Stale:
                    conn.close()
                    conn = None
            if conn is None:
                conn = await self._connect(origin, connect_t, request)
                head = await self._exchange(conn, payload, request, read_t, reused=False)
            status, reason, version, headers = head
            framing = _framing(request, status, version, headers)
            stream = _Body(self, conn, framing, request, read_t)
        except BaseException:
            self._slots.release()
            if conn is not None:
                conn.close()
            raise
        return httpx.Response(
            status,
            headers=headers,
            stream=stream,
            extensions={"http_version": version, "reason_phrase": reason},
        )

    def _take_idle(self, origin: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        now = trio.current_time()
        while idle:
            conn = idle.pop()
            if conn.expires > now and not conn.socket.is_readable():
                return conn
            conn.close()  # expired or closed by the server
        return None

    def _release(self, conn: _Connection, keep: bool) -> None:
        self._slots.release()
        if keep and not self._closed:
            conn.expires = trio.current_time() + self._keepalive_expiry
            self._idle.setdefault(conn.origin, deque()).append(conn)

    async def _connect(
        self, origin: tuple[str, str, int], connect_limit: float, request: httpx.Request
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
        request: httpx.Request,
        read_t: float,
        reused: bool,
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
        """Send the request and read the response head (skipping 1xx)."""
        try:
            await conn.stream.send_all(payload)
        except _CLOSE_ERRORS as exc:
            if reused:
                raise _Stale from exc
            raise httpx.WriteError(
                f"write failed: {exc.__class__.__name__}", request=request
            ) from exc
        buf = conn.buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = _parse_head(bytes(buf[:end]), request)
                del buf[: end + 4]
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
                if reused and not buf:
                    raise _Stale from None
                raise
            if not data:
                if reused and not buf:
                    raise _Stale
                raise httpx.RemoteProtocolError(
                    "provider disconnected without sending a response", request=request
                )
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
