"""The request path, in order. This is the only module that calls the steps in sequence.

    1. auth.KeyStore.authenticate      bearer key -> Principal (401)
    2. validation.parse_chat_request   bytes -> ChatRequest (400 on bad input)
    3. routing.Router.targets          model -> the Target, then its fallbacks (404)
    4. admission.admit                 context window (400), rate limits and
                                       concurrent streams (429), budgets (429)
    6. dispatch.Dispatcher.run         breakers, retries, fallbacks; per target:
         target_hooks                    image inlining, DeepSeek reasoning
         providers.ADAPTERS[kind]        translation (no I/O)
         relay.complete / relay.stream   the upstream call (deadline, disconnects)
    7. usage, cost, settle limits      Services.price / estimate_usage
    8. the caller logs the record      (services.Services.finish -> logwriter)

Every step raises ``GatewayError`` subclasses; the web layer renders them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import admission, relay
from .errors import GatewayError
from .providers.base import ChatRequest, Target
from .record import RequestRecord
from .target_hooks import TargetHooks
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

    targets = svc.router.targets(chat.model, svc.live_models())
    first = targets[0]
    record.provider = first.provider
    record.upstream_model = first.model

    async with admission.admit(svc, principal, chat, len(raw_body), first, record):
        return await _dispatch(svc, chat, targets, record, sink, principal.key_id)


async def _dispatch(
    svc: Services,
    chat: ChatRequest,
    targets: list[Target],
    record: RequestRecord,
    sink: relay.StreamSink,
    key_id: int,
) -> JSONReply | None:
    hooks = TargetHooks(svc, chat, key_id, record.request_id)
    outcome = relay.StreamOutcome()
    try:
        result = await svc.dispatcher.run(chat, targets, record, sink, outcome, hooks)
    finally:
        if chat.stream:
            _record_stream(svc, chat, record, outcome)
    if result is None:
        return None
    record.usage = result.usage
    record.model_answered = result.model
    record.finish_reason = result.finish_reason
    svc.price(record)
    headers = [(b"content-type", b"application/json")]
    if record.cost_usd is not None:
        headers.append((b"x-llm-proxy-cost-usd", f"{record.cost_usd:.8f}".encode()))
    return JSONReply(result.body, headers)


def _record_stream(
    svc: Services, chat: ChatRequest, record: RequestRecord, outcome: relay.StreamOutcome
) -> None:
    record.model_answered = outcome.model
    record.finish_reason = outcome.finish_reason
    translator = outcome.translator
    record.usage = getattr(translator, "usage", None)
    if outcome.first_chunk_at is not None:
        record.ttft_ms = (outcome.first_chunk_at - record.started) * 1000.0
    if record.usage is None and translator is not None and outcome.started:
        record.usage = svc.estimate_usage(chat, record.upstream_model or chat.model, translator)
    if outcome.error is not None:
        _record_error(record, outcome.error)
    svc.price(record)


def _record_error(record: RequestRecord, exc: GatewayError) -> None:
    record.error_type = exc.error_type
    if record.finish_reason is None:
        record.finish_reason = "error"
