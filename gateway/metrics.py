"""Prometheus metrics: a small registry of our own, rendered in text format 0.0.4.

``Metrics.observe(record, latency_ms)`` is called once per chat request by
``Services.finish``; it only updates dicts (O(1), no locks: everything runs on
the trio thread). ``render()`` builds the exposition text at scrape time.

Labels are ``provider`` and ``model`` only, where ``model`` is the upstream model
the request's target resolved to, never the client's free text (``"unknown"``
when the request failed before routing). Distinct (provider, model) pairs are
capped (``max_label_sets``); later pairs are folded into ``model="other"``, and
error types (which can come from a provider's error body) are capped the same
way, so a client or a provider can never grow the registry without bound.

Other modules add lines through ``extra_collectors``: each is a callable that
returns complete exposition lines (``# HELP``/``# TYPE`` included), e.g. the
circuit breakers' state. Counters the gateway cannot see in a ``RequestRecord``
have an explicit method (``rate_limit_refused``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .record import RequestRecord

PREFIX = "llm_proxy_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Seconds. A request spans from milliseconds (errors) to many minutes (reasoning streams).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
TOKEN_KINDS = ("prompt", "completion", "cached", "reasoning")

UNKNOWN = "unknown"
OTHER = "other"
_MAX_ERROR_TYPES = 100
_MAX_LABEL_LEN = 120

Pair = tuple[str, str]


class Histogram:
    """Fixed buckets; per-bucket (non-cumulative) counts, made cumulative on render."""

    __slots__ = ("buckets", "count", "counts", "total")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.count += 1
        self.total += value


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    return ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _header(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


class Metrics:
    def __init__(self, max_label_sets: int = 500) -> None:
        self.max_label_sets = max_label_sets
        self._pairs: set[Pair] = set()
        self._error_types: set[str] = set()
        self.requests: dict[tuple[str, str, str], int] = {}
        self.errors: dict[tuple[str, str, str], int] = {}
        self.tokens: dict[tuple[str, str, str], int] = {}
        self.cost: dict[Pair, float] = {}
        self.latency: dict[Pair, Histogram] = {}
        self.ttft: dict[Pair, Histogram] = {}
        self.rate_limit_refusals = 0
        #: Callables returning complete exposition lines, appended to every scrape.
        self.extra_collectors: list[Callable[[], Iterable[str]]] = []

    # -- recording (hot path) --------------------------------------------------------

    def _pair(self, provider: str | None, model: str | None) -> Pair:
        pair = (provider or UNKNOWN, (model or UNKNOWN)[:_MAX_LABEL_LEN])
        if pair in self._pairs:
            return pair
        if len(self._pairs) >= self.max_label_sets:
            return (pair[0], OTHER)
        self._pairs.add(pair)
        return pair

    def _error_type(self, error_type: str) -> str:
        if error_type in self._error_types:
            return error_type
        if len(self._error_types) >= _MAX_ERROR_TYPES:
            return OTHER
        error_type = error_type[:_MAX_LABEL_LEN]
        self._error_types.add(error_type)
        return error_type

    def observe(self, record: RequestRecord, latency_ms: float) -> None:
        """Count one finished chat request."""
        provider, model = pair = self._pair(record.provider, record.upstream_model)
        key = (provider, model, f"{record.status // 100}xx")
        self.requests[key] = self.requests.get(key, 0) + 1
        if record.error_type:
            key = (provider, model, self._error_type(record.error_type))
            self.errors[key] = self.errors.get(key, 0) + 1
        usage = record.usage
        if usage is not None:
            for kind, n in (
                ("prompt", usage.prompt_tokens),
                ("completion", usage.completion_tokens),
                ("cached", usage.cached_tokens),
                ("reasoning", usage.reasoning_tokens),
            ):
                if n:
                    key = (provider, model, kind)
                    self.tokens[key] = self.tokens.get(key, 0) + n
        if record.cost_usd:
            self.cost[pair] = self.cost.get(pair, 0.0) + record.cost_usd
        hist = self.latency.get(pair)
        if hist is None:
            hist = self.latency[pair] = Histogram(LATENCY_BUCKETS)
        hist.observe(latency_ms / 1000.0)
        if record.ttft_ms is not None:
            hist = self.ttft.get(pair)
            if hist is None:
                hist = self.ttft[pair] = Histogram(TTFT_BUCKETS)
            hist.observe(record.ttft_ms / 1000.0)

    def rate_limit_refused(self) -> None:
        """A request was refused by the gateway's own rate limiter."""
        self.rate_limit_refusals += 1

    # -- exposition ------------------------------------------------------------------

    def render(self, gauges: Mapping[str, tuple[str, str, float]] | None = None) -> str:
        """The exposition text. ``gauges`` maps a metric name (without prefix) to
        (type, help, value) for values read at scrape time (in-flight, log queue)."""
        out: list[str] = []
        self._counter(
            out,
            "requests_total",
            "Chat requests finished, by HTTP status class.",
            ("provider", "model", "status_class"),
            self.requests.items(),
        )
        self._counter(
            out,
            "errors_total",
            "Chat requests that ended in an error, by error type.",
            ("provider", "model", "error_type"),
            self.errors.items(),
        )
        self._counter(
            out,
            "tokens_total",
            "Tokens used (cached is part of prompt, reasoning part of completion).",
            ("provider", "model", "kind"),
            self.tokens.items(),
        )
        self._counter(
            out,
            "cost_usd_total",
            "Cost of the requests in US dollars, where a price is known.",
            ("provider", "model"),
            self.cost.items(),
        )
        name = PREFIX + "rate_limit_refusals_total"
        out += _header(name, "counter", "Requests refused by the gateway's own rate limits.")
        out.append(f"{name} {self.rate_limit_refusals}")
        self._histogram(
            out,
            "request_latency_seconds",
            "Seconds from request arrival to the last byte of the answer.",
            self.latency,
        )
        self._histogram(
            out,
            "time_to_first_token_seconds",
            "Seconds from request arrival to the first streamed chunk.",
            self.ttft,
        )
        for metric, (kind, help_text, value) in (gauges or {}).items():
            out += _header(PREFIX + metric, kind, help_text)
            out.append(f"{PREFIX}{metric} {_number(value)}")
        for collect in self.extra_collectors:
            out.extend(collect())
        return "\n".join(out) + "\n"

    @staticmethod
    def _counter(
        out: list[str],
        metric: str,
        help_text: str,
        names: tuple[str, ...],
        values: Iterable[tuple[tuple[str, ...], float]],
    ) -> None:
        name = PREFIX + metric
        out += _header(name, "counter", help_text)
        for labels, value in sorted(values):
            out.append(f"{name}{{{_labels(names, labels)}}} {_number(value)}")

    @staticmethod
    def _histogram(
        out: list[str], metric: str, help_text: str, hists: Mapping[Pair, Histogram]
    ) -> None:
        name = PREFIX + metric
        out += _header(name, "histogram", help_text)
        for pair, hist in sorted(hists.items()):
            labels = _labels(("provider", "model"), pair)
            running = 0
            for bound, n in zip((*hist.buckets, math.inf), hist.counts, strict=True):
                running += n
                out.append(f'{name}_bucket{{{labels},le="{_le(bound)}"}} {running}')
            out.append(f"{name}_sum{{{labels}}} {_number(hist.total)}")
            out.append(f"{name}_count{{{labels}}} {hist.count}")
