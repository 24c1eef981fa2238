"""Step 4 of the request path: may this request go out, and what does it hold?

Before any provider is called: the prompt must fit the model's context window
(400 ``context_length_exceeded``), the key and the gateway must have requests,
tokens and stream slots left (429 ``rate_limit_exceeded``, ``x-ratelimit-*`` on
every response), and its worst-case cost must fit every budget that applies (429
``insufficient_quota``). When the request ends, however it ends, the token estimate
is corrected, the stream slot freed and the reservation settled to the real cost.

Counting a prompt costs CPU, so it is counted only when a token limit, a budget or
the context window depends on it. Nothing here blocks or does I/O.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from .auth import Principal
from .cost import worst_case_cost
from .errors import BadRequest, RateLimited
from .providers.base import ChatRequest, Target
from .record import RequestRecord

if TYPE_CHECKING:
    from .services import Services

#: Output assumed for a budget's worst case when neither the request nor the
#: catalogue gives a limit.
DEFAULT_MAX_OUTPUT = 4096
#: No prompt whose JSON is under 1/16 of the context window (in bytes) can exceed it:
#: even an image part, counted as 765 tokens, takes more than 48 bytes.
_BYTES_PER_TOKEN_FLOOR = 16


@asynccontextmanager
async def admit(
    svc: Services,
    principal: Principal,
    chat: ChatRequest,
    body_size: int,
    target: Target,
    record: RequestRecord,
) -> AsyncIterator[None]:
    requested_output = chat.body.get("max_completion_tokens") or chat.body.get("max_tokens")
    limits = svc.limits_for(principal)
    budget = svc.budget_limits_for(principal)
    price = svc.prices.lookup(target.provider, target.model)
    context_limit = price.context_limit if price is not None else None
    prompt = 0
    if (
        limits.tpm > 0
        or svc.limiter.global_limits.tpm > 0
        or svc.budgets.active(budget)
        or (context_limit and body_size * _BYTES_PER_TOKEN_FLOOR > context_limit)
    ):
        prompt = svc.tokens.estimate_prompt(chat.body, target.model)
    if context_limit and prompt > context_limit:
        raise BadRequest(
            f"This model's maximum context length is {context_limit} tokens; the "
            f"messages come to about {prompt} tokens.",
            param="messages",
            code="context_length_exceeded",
        )
    try:
        ticket = svc.limiter.acquire_nowait(
            str(principal.key_id), limits, prompt + (requested_output or 0), chat.stream
        )
    except RateLimited:
        svc.metrics.rate_limit_refused()
        raise
    record.headers.extend((k.encode(), v.encode()) for k, v in ticket.headers)
    try:
        max_output = requested_output or (price and price.output_limit) or DEFAULT_MAX_OUTPUT
        reservation = svc.budgets.reserve(
            principal.key_id, budget, worst_case_cost(prompt, max_output, price)
        )
        try:
            yield
        finally:
            svc.budgets.settle(reservation, record.cost_usd)
    finally:
        used = record.usage.total_tokens if record.usage is not None else None
        svc.limiter.settle(ticket, limits, used)
        svc.limiter.release(ticket)
