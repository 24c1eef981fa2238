"""The request path, in order. This is the only module that calls the steps in sequence.

    1. auth.KeyStore.authenticate      bearer key -> Principal
    2. validation.parse_chat_request   bytes -> ChatRequest (400 on bad input)
    3. routing.Router.resolve          model -> Target (404 when unknown or disabled)
    4. providers.ADAPTERS[kind]        the translator for that provider
    5. relay.complete / relay.stream   the upstream call (deadline, errors, disconnects)
    6. the caller logs the record      (services.Services.finish -> logwriter)

Every step raises ``GatewayError`` subclasses; the web layer renders them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from . import relay
from .errors import GatewayError
from .record import RequestRecord
from .validation import parse_chat_request

if TYPE_CHECKING:
    from .services import Services


class JSONReply:
    __slots__ = ("body", "headers", "status")

    def __init__(self, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = 200
        self.body = body
        self.headers = headers


async def handle_chat(
    svc: Services,
    raw_body: bytes,
    authorization: bytes | None,
    record: RequestRecord,
    sink: relay.StreamSink,
) -> JSONReply | None:
    """Serve one chat completion. Returns the reply, or None when it was streamed into
    ``sink``. Raises ``GatewayError`` for anything that fails before a stream starts."""
    principal = await svc.keys.authenticate(authorization)
    record.client_key_id = principal.key_id
    record.client_name = principal.name

    chat = parse_chat_request(raw_body)
    record.model_requested = chat.model
    record.stream = chat.stream

    target = svc.router.resolve(chat.model, svc.live_models())
    record.provider = target.provider
    record.upstream_model = target.model
    adapter = svc.adapters[target.kind]
    client = svc.clients[target.provider]
    deadline = svc.settings.providers[target.provider].deadline
    record.attempts = 1

    if not chat.stream:
        result = await relay.complete(client, adapter, chat, target, deadline)
        record.usage = result.usage
        record.model_answered = result.model
        record.finish_reason = result.finish_reason
        svc.price(record)
        headers = [(b"content-type", b"application/json")]
        if record.cost_usd is not None:
            headers.append((b"x-llm-proxy-cost-usd", f"{record.cost_usd:.8f}".encode()))
        return JSONReply(result.body, headers)

    outcome = relay.StreamOutcome()
    try:
        await relay.stream(client, adapter, chat, target, deadline, sink, outcome)
    finally:
        record.model_answered = outcome.model
        record.finish_reason = outcome.finish_reason
        translator = outcome.translator
        record.usage = getattr(translator, "usage", None)
        if outcome.first_chunk_at is not None:
            record.ttft_ms = (outcome.first_chunk_at - record.started) * 1000.0
        if record.usage is None and translator is not None:
            record.usage = svc.estimate_usage(chat, target, translator)
        if outcome.error is not None:
            _record_error(record, outcome.error)
        svc.price(record)
    return None


def _record_error(record: RequestRecord, exc: GatewayError) -> None:
    record.error_type = exc.error_type
    if record.finish_reason is None:
        record.finish_reason = "error"


def elapsed_ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000.0
