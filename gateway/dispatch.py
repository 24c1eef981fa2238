"""Steps 4-5 of the request path: breakers, retries and fallbacks around the relay.

For each target in order (the routed one, then its ``[fallbacks]`` chain):

- both breakers (provider, provider/model) must admit the call, else the next
  target is tried at once;
- a failure that is safe to retry on the same target (refused connection, 429,
  502/503/504; never once a stream has sent bytes to the client) is retried up to
  ``retries.attempts`` times with jittered exponential backoff, honouring the
  provider's ``Retry-After`` up to ``retries.max_retry_after``, all within the
  request's deadline;
- any other provider failure (timeouts, 500, malformed answers) moves on to the
  next target; a client-side error (the provider's 400/404, a refused image) is
  final.

Every attempt counts on ``record.attempts``; ``record.provider`` names the last
target tried. Breaker outcomes are recorded here and only here.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import trio

from . import relay
from .breaker import CircuitBreaker, Outcome, Permit
from .errors import (
    GatewayError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from .providers.base import ChatRequest, ChatResult, Target
from .record import RequestRecord
from .target_hooks import TargetHooks

if TYPE_CHECKING:
    from .services import Services


def outcome_of(exc: GatewayError | None) -> Outcome:
    """What an attempt says about the provider's health."""
    if exc is None:
        return Outcome.SUCCESS
    if isinstance(exc, UpstreamStatusError):
        if exc.upstream_status == 429:
            return Outcome.RATE_LIMITED
        return Outcome.FAILURE if exc.unhealthy else Outcome.SUCCESS
    return Outcome.FAILURE if isinstance(exc, UpstreamError) else Outcome.SUCCESS


class Attempt:
    """Admission through a target's breakers, released exactly once."""

    def __init__(self, breakers: tuple[CircuitBreaker, ...]) -> None:
        self._breakers = breakers
        self._permits: list[tuple[CircuitBreaker, Permit]] = []
        for breaker in breakers:
            try:
                self._permits.append((breaker, breaker.allow()))
            except UpstreamUnavailable:
                self.release()
                raise

    def record(self, exc: GatewayError | None) -> None:
        outcome = outcome_of(exc)
        for breaker, permit in self._permits:
            breaker.record(permit, outcome)

    def release(self) -> None:
        for breaker, permit in self._permits:
            breaker.release(permit)


class Dispatcher:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.retries = svc.settings.retries

    def _backoff(self, attempt: int, exc: UpstreamError) -> float | None:
        """Seconds to wait before retrying, or None when the provider asks for longer."""
        retry_after: float | None = getattr(exc, "retry_after", None)
        if retry_after is not None:
            if retry_after > self.retries.max_retry_after:
                return None
            return float(retry_after)
        base: float = min(self.retries.backoff_max, self.retries.backoff_initial * 2.0**attempt)
        return base * (0.5 + random.random() / 2)  # jitter: half to full

    async def run(
        self,
        chat: ChatRequest,
        targets: list[Target],
        record: RequestRecord,
        sink: relay.StreamSink,
        outcome: relay.StreamOutcome,
        hooks: TargetHooks,
    ) -> ChatResult | None:
        """Serve ``chat`` from the first target that answers. Raises the last failure."""
        svc = self.svc
        deadline_at = trio.current_time() + svc.settings.providers[targets[0].provider].deadline
        last: GatewayError | None = None
        for target in targets:
            adapter = svc.adapters[target.kind]
            client = svc.upstreams[target.provider]
            upstream_chat: ChatRequest | None = None
            for attempt in range(self.retries.attempts + 1):
                try:
                    admitted = Attempt(svc.breakers.for_target(target.provider, target.model))
                except UpstreamUnavailable as exc:
                    last = exc
                    break
                record.attempts += 1
                record.provider = target.provider
                record.upstream_model = target.model
                remaining = deadline_at - trio.current_time()
                if remaining <= 0:
                    admitted.release()
                    raise last or UpstreamTimeout("request deadline exceeded before an answer")
                try:
                    if upstream_chat is None:
                        upstream_chat = await hooks.prepare(target)
                    if chat.stream:
                        failed: UpstreamError | None = None
                        try:
                            await relay.stream(
                                client, adapter, upstream_chat, target, remaining, sink, outcome
                            )
                        except UpstreamError as exc:
                            failed = exc
                            raise
                        finally:  # also when cancelled: keep what the stream delivered
                            hooks.finished(
                                target,
                                upstream_chat,
                                None,
                                outcome.translator,
                                outcome.error or failed,
                            )
                        admitted.record(outcome.error)
                        return None
                    result = await relay.complete(client, adapter, upstream_chat, target, remaining)
                    hooks.finished(target, upstream_chat, result, None, None)
                    admitted.record(None)
                    return result
                except UpstreamError as exc:
                    admitted.record(exc)
                    if upstream_chat is not None and not chat.stream:  # streams: done above
                        hooks.finished(target, upstream_chat, None, None, exc)
                    last = exc
                    if outcome.started:
                        raise
                    if not exc.retryable or attempt == self.retries.attempts:
                        break
                    delay = self._backoff(attempt, exc)
                    if delay is None or trio.current_time() + delay >= deadline_at:
                        break
                    await trio.sleep(delay)
                except GatewayError as exc:
                    admitted.record(exc)
                    raise
                finally:
                    admitted.release()  # cancelled or errored: frees a half-open probe
        assert last is not None  # every loop iteration either returns or sets it
        raise last
