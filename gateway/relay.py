"""Step 6 of the request path: send the adapter's request and bring the answer back.

This is the only module that talks to providers. It applies the overall deadline
(a trio cancel scope around the whole exchange), maps httpx errors through
``http_client.map_transport_errors``, and hands upstream bytes to the adapter.

Streams: the client's response headers are sent only once the provider answered
2xx, so an upstream error before the first byte still reaches the client as a
proper status with OpenAI's error envelope. After that, a failure becomes an SSE
``data: {"error": ...}`` event followed by ``data: [DONE]``. Every upstream read
is translated and written to the client at once (one write per read, never held
back). When the client goes away, the caller cancels the scope this runs in, and
the ``finally`` below closes the upstream response, so the provider sees its
connection close.
"""

from __future__ import annotations

import time
from contextlib import aclosing
from typing import Protocol

import httpx
import orjson
import trio

from .errors import GatewayError, UpstreamProtocolError, UpstreamTimeout
from .http_client import Upstream, map_transport_errors
from .providers.base import (
    ChatRequest,
    ChatResult,
    ProviderAdapter,
    StreamTranslator,
    Target,
    UpstreamRequest,
)
from .providers.sse import SSEDecoder

DONE = b"data: [DONE]\n\n"


class StreamSink(Protocol):
    """Where a relayed stream goes (the client connection)."""

    async def start(self) -> None: ...

    async def send(self, data: bytes) -> None: ...


def sse_error(exc: GatewayError) -> bytes:
    return b"data: " + orjson.dumps(exc.envelope()) + b"\n\n"


async def _send(
    upstream: Upstream, req: UpstreamRequest, provider: str, stream: bool
) -> httpx.Response:
    with map_transport_errors(provider):
        with trio.move_on_after(upstream.first_byte_timeout) as waiting:
            response = await upstream.send(req.method, req.url, req.headers, req.content)
        if waiting.cancelled_caught:
            raise UpstreamTimeout(
                f"provider {provider} did not start answering within "
                f"{upstream.first_byte_timeout:g}s"
            )
        if not stream:
            try:
                with trio.move_on_after(upstream.idle_timeout) as reading:
                    await response.aread()
                if reading.cancelled_caught:
                    raise UpstreamTimeout(f"provider {provider} stalled while answering")
            finally:
                await response.aclose()
        return response


async def _raise_for_status(
    response: httpx.Response, adapter: ProviderAdapter, provider: str, stream: bool
) -> None:
    if response.status_code < 400:
        return
    if stream:
        with map_transport_errors(provider):
            await response.aread()
    headers = {k.lower(): v for k, v in response.headers.items()}
    raise adapter.classify_error(response.status_code, headers, response.content)


async def complete(
    client: Upstream,
    adapter: ProviderAdapter,
    chat: ChatRequest,
    target: Target,
    deadline: float,
) -> ChatResult:
    """A non-streamed call. Raises ``GatewayError`` subclasses."""
    req = adapter.build_chat(chat, target)
    with trio.move_on_after(deadline) as scope:
        response = await _send(client, req, target.provider, stream=False)
    if scope.cancelled_caught:
        raise UpstreamTimeout(f"provider {target.provider} did not answer within {deadline:g}s")
    await _raise_for_status(response, adapter, target.provider, stream=False)
    return adapter.parse_chat(response.content, chat, target)


class StreamOutcome:
    """What a relayed stream did, for the request log."""

    __slots__ = ("error", "finish_reason", "first_chunk_at", "model", "started", "translator")

    def __init__(self) -> None:
        self.started = False
        self.first_chunk_at: float | None = None
        self.error: GatewayError | None = None
        self.model: str | None = None
        self.finish_reason: str | None = None
        self.translator: object | None = None


async def _pump(
    response: httpx.Response,
    decoder: SSEDecoder,
    translator: StreamTranslator,
    sink: StreamSink,
    outcome: StreamOutcome,
    first: float,
    idle: float,
) -> None:
    """Upstream reads -> translated SSE events -> one client write per read; a provider
    that sends nothing for ``idle`` seconds is cut off with ``UpstreamTimeout``."""
    # An unencoded body is read straight from the transport's stream, without httpx's
    # decoder and chunker layers (2% of a stream's CPU in the profile).
    encoded = response.headers.get("content-encoding", "identity").lower() not in ("identity", "")
    body = response.aiter_bytes() if encoded else response.stream.__aiter__()  # type: ignore[union-attr]
    async with aclosing(body) as upstream_bytes:  # type: ignore[type-var]
        reads = upstream_bytes.__aiter__()
        wait = max(first, idle)  # some providers send headers at once, then think
        while True:
            with trio.move_on_after(wait) as waiting:
                try:
                    raw = await reads.__anext__()
                except StopAsyncIteration:
                    return
            if waiting.cancelled_caught:
                raise UpstreamTimeout(f"provider stalled: no data for {wait:g}s mid-stream")
            wait = idle
            out = [
                b"data: " + p + b"\n\n" for data in decoder.feed(raw) for p in translator.feed(data)
            ]
            if out:
                if outcome.first_chunk_at is None:
                    outcome.first_chunk_at = time.perf_counter()
                await sink.send(b"".join(out))


async def stream(
    client: Upstream,
    adapter: ProviderAdapter,
    chat: ChatRequest,
    target: Target,
    deadline: float,
    sink: StreamSink,
    outcome: StreamOutcome,
) -> None:
    """Relay one stream into ``sink``.

    Raises ``GatewayError`` only before ``sink.start()``; after it, failures are
    written into the stream and recorded on ``outcome.error``.
    """
    req = adapter.build_chat(chat, target)
    translator = adapter.stream_translator(chat, target)
    outcome.translator = translator
    with trio.move_on_after(deadline) as scope:
        response = await _send(client, req, target.provider, stream=True)
        try:
            await _raise_for_status(response, adapter, target.provider, stream=True)
            await sink.start()
            outcome.started = True
            decoder = SSEDecoder()
            try:
                with map_transport_errors(target.provider):
                    await _pump(
                        response,
                        decoder,
                        translator,
                        sink,
                        outcome,
                        client.first_byte_timeout,
                        client.idle_timeout,
                    )
                tail = [
                    b"data: " + p + b"\n\n"
                    for data in decoder.close()
                    for p in translator.feed(data)
                ]
                tail += [b"data: " + p + b"\n\n" for p in translator.close()]
                if translator.finish_reason is None:
                    raise UpstreamProtocolError(
                        f"provider {target.provider} ended the stream before finishing"
                    )
                await sink.send(b"".join(tail) + DONE)
            except GatewayError as exc:
                outcome.error = exc
                await sink.send(sse_error(exc) + DONE)
        finally:
            outcome.model = translator.model
            outcome.finish_reason = translator.finish_reason
            with trio.CancelScope(shield=True):
                # Bounded: closing only drops the connection, it does not read the rest.
                with trio.move_on_after(1):
                    await response.aclose()
    if scope.cancelled_caught:
        timeout = UpstreamTimeout(
            f"stream from provider {target.provider} exceeded its {deadline:g}s deadline"
        )
        if not outcome.started:
            raise timeout
        outcome.error = timeout
        await sink.send(sse_error(timeout) + DONE)
