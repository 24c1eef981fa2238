"""The provider transport (gateway/http11.py) against scripted servers on loopback.

Each test scripts what a raw TCP (or TLS) server sends, byte for byte, and checks
what the transport makes of it: framing, connection reuse, stale connections,
protocol errors, pool limits and cancellation. Issue #6 (it replaced httpcore on
the request path); the whole API suite runs through it too.
"""

from __future__ import annotations

import gzip
import socket
import ssl
from collections.abc import Awaitable, Callable
from functools import partial

import httpx
import pytest
import trio
import trustme

from gateway.http11 import ProviderTransport

Handler = Callable[[trio.abc.Stream, int], Awaitable[None]]

CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Server:
    """Accepts connections; the n-th one (from 0) is run by ``handler(stream, n)``."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0

    async def start(self, nursery: trio.Nursery) -> None:
        listeners = await nursery.start(partial(trio.serve_tcp, self._serve, 0, host="127.0.0.1"))
        self.port = listeners[0].socket.getsockname()[1]

    async def _serve(self, stream: trio.SocketStream) -> None:
        n = self.connections
        self.connections += 1
        s: trio.abc.Stream = stream
        if self.tls is not None:
            s = trio.SSLStream(stream, self.tls, server_side=True)
        try:
            await self.handler(s, n)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(s)

    @classmethod
    def answering(cls, answer: bytes, then: str = "close") -> Server:
        """A server that reads each connection's first request and sends ``answer``;
        ``then`` is "close" (the connection) or "hang" (keep it open, silent)."""

        async def handler(stream: trio.abc.Stream, n: int) -> None:
            await server.read_request(stream)
            await stream.send_all(answer)
            if then == "hang":
                await trio.sleep_forever()

        server = cls(handler)
        return server

    async def read_request(self, stream: trio.abc.Stream) -> bytes:
        """Read one request (head + Content-Length body) and remember it."""
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = await stream.receive_some(65536)
            if not data:
                return b""
            buf += data
        head, _, body = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += await stream.receive_some(65536)
        self.requests.append(head + b"\r\n\r\n" + body)
        return head


@pytest.fixture
async def transport():
    """A factory of transports, all closed (idle sockets too) after the test."""
    made: list[ProviderTransport] = []

    def make(**kw: object) -> ProviderTransport:
        args: dict[str, object] = {
            "ssl_context": ssl.create_default_context(),
            "max_connections": 4,
            "connect_timeout": 5.0,
        }
        args.update(kw)
        made.append(ProviderTransport(**args))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for t in made:
        await t.aclose()


async def get(t: ProviderTransport, url: str, **kw: object) -> httpx.Response:
    request = httpx.Request("POST", url, content=b'{"x":1}', **kw)  # type: ignore[arg-type]
    response = await t.handle_async_request(request)
    response.request = request
    try:
        await response.aread()
    finally:
        await response.aclose()  # as the relay does
    return response


async def serve_each(server: Server, answers: list[bytes], stream: trio.abc.Stream) -> None:
    for answer in answers:
        if not await server.read_request(stream):
            return
        await stream.send_all(answer)


async def test_sends_one_well_formed_request_and_reuses_the_connection(transport, nursery):
    server = Server(lambda s, n: serve_each(server, [OK, OK, OK], s))
    await server.start(nursery)
    t = transport()
    url = f"http://127.0.0.1:{server.port}/v1/chat?a=1"
    for _ in range(3):
        r = await get(t, url, headers={"Authorization": "Bearer k"})
        assert (r.status_code, r.content, r.headers["content-type"]) == (200, b"ok", "text/plain")
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat?a=1 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in first
    assert b"\r\nContent-Length: 7\r\n" in first
    assert b"\r\nAuthorization: Bearer k\r\n" in first
    assert first.endswith(b'\r\n\r\n{"x":1}')
    assert t.statistics() == {"in_use": 0, "idle": 1}


async def test_chunked_body_split_anywhere_with_extensions_and_trailers(transport, nursery):
    body = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: y\r\n\r\n"
    )

    async def handler(stream: trio.abc.Stream, n: int) -> None:
        for _ in range(2):
            await server.read_request(stream)
            for i in range(len(body)):  # one byte per write: every split point
                await stream.send_all(body[i : i + 1])
                await trio.lowlevel.checkpoint()

    server = Server(handler)
    await server.start(nursery)
    t = transport()
    for _ in range(2):
        r = await get(t, f"http://127.0.0.1:{server.port}/")
        assert r.content == b"hello world"
    assert server.connections == 1  # the trailer was consumed; the connection was kept


async def test_chunks_that_arrive_together_are_yielded_as_one_piece(transport, nursery):
    events = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in [b"data: 1\n\n", b"data: 2\n\n"])

    async def handler(stream: trio.abc.Stream, n: int) -> None:
        await server.read_request(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await trio.sleep(0.05)
        await stream.send_all(events)
        await trio.sleep(0.05)
        await stream.send_all(b"9\r\ndata: 3\n\n\r\n0\r\n\r\n")

    server = Server(handler)
    await server.start(nursery)
    t = transport()
    request = httpx.Request("POST", f"http://127.0.0.1:{server.port}/", content=b"{}")
    response = await t.handle_async_request(request)
    pieces = [p async for p in response.aiter_raw()]
    assert pieces == [b"data: 1\n\ndata: 2\n\n", b"data: 3\n\n"]


async def test_body_until_close_and_connection_close_are_not_reused(transport, nursery):
    answers = [
        b"HTTP/1.1 200 OK\r\n\r\nno length, ends at close",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ]

    async def handler(stream: trio.abc.Stream, n: int) -> None:
        await server.read_request(stream)
        await stream.send_all(answers[n])

    server = Server(handler)
    await server.start(nursery)
    t = transport()
    r = await get(t, f"http://127.0.0.1:{server.port}/")
    assert r.content == b"no length, ends at close"
    for _ in range(2):
        assert (await get(t, f"http://127.0.0.1:{server.port}/")).content == b"ok"
    assert server.connections == 3
    assert t.statistics()["idle"] == 0


async def test_an_idle_connection_the_server_closed_is_not_used(transport, nursery):
    server = Server.answering(OK)  # then close: the pooled connection is dead
    await server.start(nursery)
    t = transport()
    assert (await get(t, f"http://127.0.0.1:{server.port}/")).content == b"ok"
    await trio.sleep(0.05)
    assert (await get(t, f"http://127.0.0.1:{server.port}/")).content == b"ok"
    assert server.connections == 2


@pytest.mark.parametrize(
    ("method", "headers", "retried"),
    [
        ("POST", {}, False),  # a chat call is never sent twice: it could bill twice
        ("POST", {"Idempotency-Key": "k1"}, True),
        ("GET", {}, True),
    ],
)
async def test_a_reused_connection_closed_on_our_request_is_retried_only_if_replayable(
    transport, nursery, method, headers, retried
):
    async def handler(stream: trio.abc.Stream, n: int) -> None:
        await server.read_request(stream)
        if n == 0:
            await stream.send_all(OK)
            await server.read_request(stream)  # read the next one, then close unanswered
            return
        await stream.send_all(OK)

    server = Server(handler)
    await server.start(nursery)
    t = transport()
    url = f"http://127.0.0.1:{server.port}/"
    first = await t.send(method, url, headers, b"")
    assert await first.aread() == b"ok"
    await first.aclose()
    if retried:
        response = await t.send(method, url, headers, b"")
        assert response.status_code == 200
        await response.aclose()
        assert (server.connections, len(server.requests)) == (2, 3)
    else:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await t.send(method, url, headers, b"")
        assert (server.connections, len(server.requests)) == (1, 2)
    assert t.statistics()["in_use"] == 0


async def test_a_new_connection_closed_without_an_answer_is_an_error(transport, nursery):
    async def handler(stream: trio.abc.Stream, n: int) -> None:
        await server.read_request(stream)

    server = Server(handler)
    await server.start(nursery)
    t = transport()
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await get(t, f"http://127.0.0.1:{server.port}/")
    assert server.connections == 1  # not retried: the provider may have acted on it
    assert t.statistics() == {"in_use": 0, "idle": 0}


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "mid-response"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "mid-response"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n", "overran"),
        (b"SPDY/3 200 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "status code"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 70_000, "too large"),
        # int(x, 16) takes all of these; a desync on a pooled connection if we did
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nok\r\n0\r\n\r\n",
            "chunk size",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-0\r\n\r\n", "chunk size"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0_2\r\nok\r\n0\r\n\r\n",
            "chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\nok\r\n0\r\n\r\n",
            "chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "Transfer-Encoding",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nX: a\nSet-Cookie: b\r\nContent-Length: 0\r\n\r\n", "header line"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "switched protocols"),
    ],
)
async def test_broken_responses_are_protocol_errors(transport, nursery, answer, match):
    server = Server.answering(answer)
    await server.start(nursery)
    t = transport()
    with pytest.raises(httpx.RemoteProtocolError, match=match):
        await get(t, f"http://127.0.0.1:{server.port}/")
    assert t.statistics() == {"in_use": 0, "idle": 0}


async def test_informational_responses_are_skipped_and_gzip_is_decoded(transport, nursery):
    payload = gzip.compress(b"squeezed")

    async def handler(stream: trio.abc.Stream, n: int) -> None:
        await server.read_request(stream)
        await stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        await stream.send_all(
            b"HTTP/1.1 201 Created\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
            % (len(payload), payload)
        )

    server = Server(handler)
    await server.start(nursery)
    r = await get(transport(), f"http://127.0.0.1:{server.port}/")
    assert (r.status_code, r.content) == (201, b"squeezed")


async def test_closing_a_response_early_drops_its_connection(transport, nursery):
    server = Server.answering(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart", then="hang")
    await server.start(nursery)
    t = transport()
    request = httpx.Request("GET", f"http://127.0.0.1:{server.port}/")
    response = await t.handle_async_request(request)
    assert t.statistics() == {"in_use": 1, "idle": 0}
    await response.aclose()
    assert t.statistics() == {"in_use": 0, "idle": 0}


async def test_cancelled_mid_body_releases_the_connection(transport, nursery):
    server = Server.answering(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n", then="hang"
    )
    await server.start(nursery)
    t = transport()
    got = []
    with trio.move_on_after(0.2):
        request = httpx.Request("GET", f"http://127.0.0.1:{server.port}/")
        response = await t.handle_async_request(request)
        try:
            async for piece in response.aiter_raw():
                got.append(piece)
        finally:
            with trio.CancelScope(shield=True):
                await response.aclose()
    assert got == [b"a"]
    assert t.statistics() == {"in_use": 0, "idle": 0}


async def test_pool_limit_waits_then_times_out(transport, nursery, autojump_clock):
    server = Server.answering(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", then="hang")
    await server.start(nursery)
    t = transport(max_connections=1)
    held = await t.handle_async_request(httpx.Request("GET", f"http://127.0.0.1:{server.port}/"))
    timeout = {"pool": 3.0, "connect": 3.0, "read": 3.0, "write": 3.0}
    start = trio.current_time()
    with pytest.raises(httpx.PoolTimeout):
        await get(t, f"http://127.0.0.1:{server.port}/", extensions={"timeout": timeout})
    assert trio.current_time() - start == pytest.approx(3.0)
    await held.aclose()  # frees the one slot: the next request gets a connection
    after = await t.handle_async_request(httpx.Request("GET", f"http://127.0.0.1:{server.port}/"))
    assert after.status_code == 200
    assert t.statistics() == {"in_use": 1, "idle": 0}
    await after.aclose()


async def test_read_timeout_from_the_request_extension(transport, nursery, autojump_clock):
    async def handler(stream: trio.abc.Stream, n: int) -> None:
        await server.read_request(stream)
        await trio.sleep_forever()

    server = Server(handler)
    await server.start(nursery)
    t = transport()
    timeout = {"pool": 1.0, "connect": 1.0, "read": 7.0, "write": 1.0}
    start = trio.current_time()
    with pytest.raises(httpx.ReadTimeout):
        await get(t, f"http://127.0.0.1:{server.port}/", extensions={"timeout": timeout})
    assert trio.current_time() - start == pytest.approx(7.0)
    assert t.statistics() == {"in_use": 0, "idle": 0}


async def test_connect_refused_is_a_connect_error(transport):
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening
        with pytest.raises(httpx.ConnectError):
            await get(transport(), f"http://127.0.0.1:{port}/")


async def test_header_values_cannot_smuggle_lines(transport):
    t = transport()
    request = httpx.Request("GET", "http://127.0.0.1:9/", headers={"X-A": "1\r\nX-Evil: 2"})
    with pytest.raises(httpx.LocalProtocolError):
        await t.handle_async_request(request)
    assert t.statistics() == {"in_use": 0, "idle": 0}


async def test_https_verifies_the_server_and_reuses_the_tls_connection(transport, nursery):
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    server = Server(lambda s, n: serve_each(server, [OK, OK], s), tls=server_ctx)
    await server.start(nursery)

    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    t = transport(ssl_context=client_ctx)
    for _ in range(2):
        assert (await get(t, f"https://localhost:{server.port}/")).content == b"ok"
    assert server.connections == 1

    untrusting = transport(ssl_context=ssl.create_default_context())
    with pytest.raises(httpx.ConnectError):
        await get(untrusting, f"https://localhost:{server.port}/")


async def test_the_relays_entry_point_sends_the_same_request_without_httpx_request(
    transport, nursery
):
    server = Server(lambda s, n: serve_each(server, [OK, OK], s))
    await server.start(nursery)
    t = transport()
    url = f"http://127.0.0.1:{server.port}/v1/chat?a=1"
    for _ in range(2):
        response = await t.send("POST", url, {"authorization": "Bearer k"}, b'{"x":1}')
        assert (response.status_code, await response.aread()) == (200, b"ok")
    assert server.connections == 1
    assert server.requests[0] == (
        b"POST /v1/chat?a=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nauthorization: Bearer k\r\n"
        b'Content-Length: 7\r\n\r\n{"x":1}' % server.port
    )
    with pytest.raises(httpx.LocalProtocolError):
        await t.send("POST", url, {"x-a": "1\r\nx-evil: 2"}, b"")
    with pytest.raises(httpx.UnsupportedProtocol):
        await t.send("POST", "ftp://127.0.0.1/", {}, b"")
    assert t.statistics() == {"in_use": 0, "idle": 1}


async def test_a_body_with_both_chunked_and_a_length_ends_its_connection(transport, nursery):
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    )
    server = Server(lambda s, n: serve_each(server, [answer, answer], s))
    await server.start(nursery)
    t = transport()
    for _ in range(2):
        assert (await get(t, f"http://127.0.0.1:{server.port}/")).content == b"ok"
    assert server.connections == 2  # RFC 9112 6.3: close after such a message


async def test_a_streamed_request_body_is_sent_whole_with_one_length(transport, nursery):
    server = Server(lambda s, n: serve_each(server, [OK], s))
    await server.start(nursery)

    async def parts():
        yield b"ab"
        yield b"c"

    request = httpx.Request("POST", f"http://127.0.0.1:{server.port}/x", content=parts())
    assert request.headers["transfer-encoding"] == "chunked"
    response = await transport().handle_async_request(request)
    await response.aread()
    sent = server.requests[0].lower()
    assert b"transfer-encoding" not in sent
    assert sent.count(b"content-length") == 1
    assert sent.endswith(b"content-length: 3\r\n\r\nabc")


async def test_a_response_finished_after_the_transport_closed_closes_its_socket(transport, nursery):
    server = Server(lambda s, n: serve_each(server, [OK], s))
    await server.start(nursery)
    t = transport()
    response = await t.send("POST", f"http://127.0.0.1:{server.port}/", {}, b"")
    await t.aclose()  # e.g. shutdown with a provider call in flight
    await response.aread()  # an unclosed socket would fail the test (ResourceWarning)
    assert t.statistics() == {"in_use": 0, "idle": 0}


async def test_a_stray_tls_record_after_an_answer_is_not_read_as_the_next_one(transport, nursery):
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)

    async def handler(stream: trio.abc.Stream, n: int) -> None:
        await server.read_request(stream)
        if n == 0:  # two TLS records in one TCP segment: the answer, then junk
            tcp = stream.transport_stream  # type: ignore[attr-defined]
            tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            await stream.send_all(OK)
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSTALE")
            tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
            await trio.sleep_forever()
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")

    server = Server(handler, tls=server_ctx)
    await server.start(nursery)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    t = transport(ssl_context=client_ctx)
    url = f"https://localhost:{server.port}/"
    assert (await get(t, url)).content == b"ok"
    await trio.sleep(0.1)
    assert (await get(t, url)).content == b"fresh"
    assert server.connections == 2
