"""Dollars from normalised usage: ``Usage`` x ``Price`` -> USD.

Step 7 of the request path. Pure functions, no I/O, no state. Adapters have already
normalised every provider's usage to OpenAI's convention (see ``providers.base.Usage``),
so nothing here knows about providers.

Line items (USD per 1M tokens from ``pricing.Price``):

* uncached input   ``prompt - cached - cache_write`` at ``input``
* cache reads      ``cached`` at ``cache_read`` (``input`` when no separate price)
* cache writes     ``cache_write`` at ``cache_write`` (``input`` when no separate price)
* output           ``completion`` at ``output``; when the model has a separate
  ``reasoning`` price the reasoning subset is billed at it instead (xAI bills
  reasoning at the output rate, so either way gives the same total there)

When the prompt exceeds ``price.over_tokens`` (200 000) and the price has a
long-context tier, the *whole* request is billed at the tier (Gemini and xAI do so).

An unknown price gives ``None``, never 0: a request we cannot price must not look free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .pricing import Price
from .providers.base import Usage

PER_TOKENS = 1_000_000


@dataclass(frozen=True, slots=True)
class LineItem:
    kind: str  # input, cache_read, cache_write, output, reasoning
    tokens: int
    rate: float  # USD per 1M tokens
    rate_from: str  # the Price field the rate came from (differs when it fell back)

    @property
    def usd(self) -> float:
        return self.tokens * self.rate / PER_TOKENS


def tier_for(prompt_tokens: int, price: Price) -> Price:
    """The price that applies to a request with ``prompt_tokens`` of input."""
    while price.over_200k is not None and prompt_tokens > price.over_tokens:
        price = price.over_200k
    return price


def line_items(usage: Usage, price: Price) -> list[LineItem]:
    """The billed parts of ``usage`` (zero-token parts left out).

    Subsets larger than their total (an adapter bug) are clamped, so the items always
    add up to exactly ``prompt_tokens + completion_tokens``.
    """
    rates = tier_for(usage.prompt_tokens, price)
    prompt = max(usage.prompt_tokens, 0)
    cached = min(max(usage.cached_tokens, 0), prompt)
    written = min(max(usage.cache_write_tokens, 0), prompt - cached)
    completion = max(usage.completion_tokens, 0)
    reasoning = min(max(usage.reasoning_tokens, 0), completion)
    if rates.reasoning is None:
        reasoning = 0  # billed with the rest of the output
    items = [
        LineItem("input", prompt - cached - written, rates.input, "input"),
        _fallback("cache_read", cached, rates.cache_read, rates.input),
        _fallback("cache_write", written, rates.cache_write, rates.input),
        LineItem("output", completion - reasoning, rates.output, "output"),
        _fallback("reasoning", reasoning, rates.reasoning, rates.output),
    ]
    return [item for item in items if item.tokens]


def _fallback(kind: str, tokens: int, rate: float | None, base: float) -> LineItem:
    if rate is None:
        return LineItem(kind, tokens, base, "output" if kind == "reasoning" else "input")
    return LineItem(kind, tokens, rate, kind)


def cost_usd(usage: Usage, price: Price | None) -> float | None:
    """What ``usage`` cost in USD, or ``None`` when the price is unknown."""
    if price is None:
        return None
    return sum((item.usd for item in line_items(usage, price)), 0.0)


def explain(usage: Usage, price: Price | None) -> dict[str, Any]:
    """The line items behind ``cost_usd``, as plain JSON-ready data for the dashboard.

    ``{"total_usd", "known", "estimated", "tier", "over_tokens", "items": [{kind,
    tokens, usd_per_million, rate_from, usd}]}``; ``tier`` is ``"base"`` or
    ``"long_context"``. With no price, ``total_usd`` is ``None`` and ``items`` empty.
    """
    if price is None:
        return {
            "total_usd": None,
            "known": False,
            "estimated": usage.estimated,
            "tier": None,
            "over_tokens": None,
            "items": [],
            "note": "no price is known for this model; add one under pricing overrides",
        }
    items = line_items(usage, price)
    long_context = tier_for(usage.prompt_tokens, price) is not price
    return {
        "total_usd": sum((item.usd for item in items), 0.0),
        "known": True,
        "estimated": usage.estimated,
        "tier": "long_context" if long_context else "base",
        "over_tokens": price.over_tokens if price.over_200k is not None else None,
        "items": [
            {
                "kind": item.kind,
                "tokens": item.tokens,
                "usd_per_million": item.rate,
                "rate_from": item.rate_from,
                "usd": item.usd,
            }
            for item in items
        ],
        "note": None,
    }


def worst_case_cost(prompt_estimate: int, max_output: int, price: Price | None) -> float | None:
    """An upper bound for budget reservations before the request is sent.

    Every prompt token at the dearer of ``input`` and ``cache_write`` (nothing cached),
    every output token at the dearer of ``output`` and ``reasoning``, at the tier the
    prompt size selects.
    """
    if price is None:
        return None
    rates = tier_for(prompt_estimate, price)
    input_rate = max(rates.input, rates.cache_write or 0.0)
    output_rate = max(rates.output, rates.reasoning or 0.0)
    return (max(prompt_estimate, 0) * input_rate + max(max_output, 0) * output_rate) / PER_TOKENS
