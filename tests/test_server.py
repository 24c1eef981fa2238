"""The server loop (gateway/web/server.py): keep-alive timing, client hang-ups and
shutdown, on real sockets under trio's MockClock. A two-line ASGI app stands in for
the gateway so that only the connection handling is under test. Issue #6."""

from __future__ import annotations

import email.utils
import time

import pytest
import trio

from gateway.web.server import ServerConfig, serve

REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["path"] in STREAMS:
        await STREAMS[scope["path"]](send)
        return
    if scope["path"] == "/slow":
        await trio.sleep(10)
    body = b"ok"
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": body})


PROGRESS: dict[str, int] = {}


async def two_events_apart(send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    await trio.sleep(5)  # the first event must not wait for this
    await send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": False})


async def endless(send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    PROGRESS["sent"] = 0
    piece = b"x" * 16384
    for _ in range(8192):  # 128 MiB, far more than any socket buffer
        await send({"type": "http.response.body", "body": piece, "more_body": True})
        PROGRESS["sent"] += len(piece)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


BIG = b"x" * 60_000  # below Connection.HIGH_WATER: the flusher, not the app, sends it


async def big(send):
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"60000")]}
    )
    await send({"type": "http.response.body", "body": BIG})


STREAMS = {"/two": two_events_apart, "/endless": endless, "/big": big}


class Server:
    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.stop = trio.Event()
        self.stopped = trio.Event()
        self.port = 0

    async def start(self) -> None:
        config = ServerConfig()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.errorlog = None
        config.keep_alive_timeout = 75.0
        config.graceful_timeout = 30.0

        async def run(task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                await serve(app, config, shutdown_trigger=self.stop.wait, task_status=task_status)
            finally:
                self.stopped.set()

        binds = await self.nursery.start(run)
        self.port = int(binds[0].rsplit(":", 1)[1])

    async def connect(self) -> trio.SocketStream:
        return await trio.open_tcp_stream("127.0.0.1", self.port)


async def ask(stream: trio.SocketStream, request: bytes = REQUEST) -> bytes:
    await stream.send_all(request)
    data = b""
    while not data.endswith(b"\r\n\r\nok"):
        chunk = await stream.receive_some(4096)
        assert chunk, f"closed after {data!r}"
        data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    return data


async def closed_after(stream: trio.SocketStream, limit: float) -> float:
    """Seconds (virtual) until the server closes ``stream``."""
    start = trio.current_time()
    with trio.fail_after(limit):
        while await stream.receive_some(4096):
            pass
    return trio.current_time() - start


@pytest.fixture
async def server(nursery):
    # Tests take autojump_clock themselves: pytest-trio uses a clock only when the
    # test function asks for it, not a fixture.
    s = Server(nursery)
    await s.start()
    yield s
    s.stop.set()
    await s.stopped.wait()


async def test_idle_connection_closes_after_keep_alive_timeout(server, autojump_clock):
    async with await server.connect() as stream:
        await ask(stream)
        assert await closed_after(stream, 200) == pytest.approx(75.0, abs=0.5)


async def test_each_request_restarts_the_keep_alive_timer(server, autojump_clock):
    async with await server.connect() as stream:
        for _ in range(3):  # 150 s in all, never 75 s idle at a stretch
            await ask(stream)
            await trio.sleep(50)
        await ask(stream)
        assert await closed_after(stream, 200) == pytest.approx(75.0, abs=0.5)


async def test_a_slow_request_is_not_cut_by_the_keep_alive_timer(server, autojump_clock):
    async with await server.connect() as stream:
        await ask(stream)
        await trio.sleep(70)
        start = trio.current_time()
        await ask(stream, b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")  # 10 s: past 75 s idle
        assert trio.current_time() - start == pytest.approx(10.0, abs=0.5)


async def test_a_client_hang_up_closes_the_connection_at_once(server, autojump_clock):
    # hypercorn's own loop held the socket (CLOSE-WAIT) until keep_alive_timeout.
    async with await server.connect() as stream:
        await ask(stream)
        await stream.send_eof()
        assert await closed_after(stream, 200) < 0.5


async def test_shutdown_closes_idle_connections_and_finishes_busy_ones(
    server, nursery, autojump_clock
):
    idle = await server.connect()
    busy = await server.connect()
    await ask(idle)
    answers: list[bytes] = []

    async def slow() -> None:
        answers.append(await ask(busy, b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"))

    nursery.start_soon(slow)
    await trio.sleep(1)
    start = trio.current_time()
    server.stop.set()
    assert await closed_after(idle, 5) < 0.5
    await server.stopped.wait()
    assert len(answers) == 1  # the busy request was answered before the server stopped
    assert trio.current_time() - start == pytest.approx(9.0, abs=0.5)
    await idle.aclose()
    await busy.aclose()


async def test_answers_carry_a_current_date_header(server):
    # Real clock here: the header is wall-clock time, formatted once a second.
    async with await server.connect() as stream:
        answers = [await ask(stream) for _ in range(3)]
    for answer in answers:
        date = next(h for h in answer.split(b"\r\n") if h.lower().startswith(b"date: "))
        sent = email.utils.parsedate_to_datetime(date[6:].decode()).timestamp()
        assert abs(sent - time.time()) < 5


async def test_a_streamed_write_goes_out_when_the_app_waits_not_later(server, autojump_clock):
    """Writes are coalesced until the request's task waits; then they are sent."""
    async with await server.connect() as stream:
        await stream.send_all(b"GET /two HTTP/1.1\r\nHost: t\r\n\r\n")
        start = trio.current_time()
        data = b""
        while b"data: 1" not in data:
            data += await stream.receive_some(4096)
        assert trio.current_time() - start < 0.1  # not after the app's 5 s sleep
        assert b"data: 2" not in data
        while not data.endswith(b"0\r\n\r\n"):
            data += await stream.receive_some(4096)
        assert trio.current_time() - start == pytest.approx(5.0, abs=0.1)


async def test_a_client_that_stops_reading_holds_the_sender_back(server, autojump_clock):
    async with await server.connect() as stream:
        await stream.send_all(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n")
        await stream.receive_some(100)
        await trio.sleep(30)  # we read nothing more: the app must be blocked, not buffering
        stuck_at = PROGRESS["sent"]
        await trio.sleep(30)
        assert PROGRESS["sent"] == stuck_at
        assert stuck_at < 64 * 1024 * 1024  # kernel socket buffers + our 64 KiB, no more
        total = 0
        while total < 2 * stuck_at:
            total += len(await stream.receive_some(1 << 20))
        assert PROGRESS["sent"] > stuck_at  # reading again lets it go on


async def test_an_answer_after_the_client_half_closed_is_still_delivered(server, autojump_clock):
    async with await server.connect() as stream:
        await stream.send_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        await stream.send_eof()  # the read loop ends; the 10 s answer is still owed
        data = b""
        while chunk := await stream.receive_some(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        assert data.endswith(b"\r\n\r\nok")


async def test_a_closing_answer_is_flushed_before_the_close(server, autojump_clock):
    async with await server.connect() as stream:
        await stream.send_all(b"GET / HTTP/1.0\r\n\r\n")  # no keep-alive: server closes
        data = b""
        while chunk := await stream.receive_some(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        assert data.endswith(b"\r\n\r\nok")


async def slow_reader(port: int, request: bytes, delay: float) -> bytes:
    """A client with a 2 KB receive window that starts reading after ``delay``."""
    sock = trio.socket.socket()
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 2048)
    await sock.connect(("127.0.0.1", port))
    with sock:
        await sock.send(request)
        await trio.sleep(delay)
        data = b""
        while chunk := await sock.recv(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[2]


async def test_the_idle_timer_does_not_cut_an_answer_still_being_sent(server, autojump_clock):
    # The client needs longer than keep_alive_timeout (75 s) to take the answer.
    body = await slow_reader(server.port, b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n", 100)
    assert len(body) == len(BIG)


async def test_shutdown_does_not_cut_an_answer_still_being_sent(server, nursery, autojump_clock):
    async def stop_soon() -> None:
        await trio.sleep(1)
        server.stop.set()

    nursery.start_soon(stop_soon)
    body = await slow_reader(server.port, b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n", 5)
    assert len(body) == len(BIG)
