"""Cost of normalised usage, checked against hand-computed figures.

Normalising each provider's usage shape into ``Usage`` is the adapters' job (tested
with them). Here each ``Usage`` is built by hand from the numbers in a
``../shared/reference/fixtures`` response, following the mapping in
``../shared/reference/README.md`` §2; prices come from ``models_dev_sample.json``.
Rates are USD per 1M tokens, so every sum below is in micro-dollars (µ$) and the
expected value is that sum / 1e6.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gateway.cost import cost_usd, explain, tier_for, worst_case_cost
from gateway.pricing import Catalogue, Price, parse_models_dev
from gateway.providers.base import Usage

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "../shared/reference/fixtures"


def exactly(value: float) -> object:
    return pytest.approx(value, rel=1e-12, abs=0)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return parse_models_dev((FIXTURES / "models_dev_sample.json").read_bytes())


def price(catalogue: Catalogue, provider: str, model: str) -> Price:
    found = catalogue.lookup(provider, model)
    assert found is not None
    return found


# --- one case per provider's usage shape -------------------------------------------------


def test_cost_openai_with_cached_prompt(catalogue: Catalogue) -> None:
    # openai_chat_response.json: gpt-4o-2024-08-06 (priced as gpt-4o: 2.50 / 10.00 / cached 1.25)
    # prompt 2006 of which cached 1920, completion 17
    usage = Usage(prompt_tokens=2006, completion_tokens=17, cached_tokens=1920)
    # (2006-1920)*2.50 + 1920*1.25 + 17*10.00 = 215 + 2400 + 170 = 2785 µ$
    assert cost_usd(usage, price(catalogue, "openai", "gpt-4o-2024-08-06")) == exactly(0.002785)


def test_cost_openai_reasoning_model_unknown_then_overridden(catalogue: Catalogue) -> None:
    # openai_chat_response_reasoning_model.json: o4-mini-2025-04-16, prompt 19,
    # completion 84 of which 64 reasoning (OpenAI already counts reasoning in completion)
    usage = Usage(prompt_tokens=19, completion_tokens=84, reasoning_tokens=64)
    # models.dev's sample has no o4-mini: unknown, never free
    assert cost_usd(usage, catalogue.lookup("openai", "o4-mini-2025-04-16")) is None
    # an operator-supplied price: 1.10 in / 4.40 out / 0.275 cached
    priced = catalogue.with_overrides(
        {"openai/o4-mini": {"input": 1.10, "output": 4.40, "cache_read": 0.275}}
    )
    # 19*1.10 + 84*4.40 (reasoning at the output rate) = 20.9 + 369.6 = 390.5 µ$
    assert cost_usd(usage, priced.lookup("openai", "o4-mini-2025-04-16")) == exactly(0.0003905)


def test_cost_gemini_with_cache_and_thoughts(catalogue: Catalogue) -> None:
    # gemini_response.json: gemini-2.5-flash (0.30 / 2.50 / cached 0.03)
    # promptTokenCount 2110, cachedContentTokenCount 2048, candidatesTokenCount 17,
    # thoughtsTokenCount 24 -> completion 17+24 = 41, reasoning 24
    usage = Usage(prompt_tokens=2110, completion_tokens=41, cached_tokens=2048, reasoning_tokens=24)
    # (2110-2048)*0.30 + 2048*0.03 + 41*2.50 = 18.6 + 61.44 + 102.5 = 182.54 µ$
    assert cost_usd(usage, price(catalogue, "gemini", "gemini-2.5-flash")) == exactly(0.00018254)


def test_cost_deepseek_cache_hit_and_miss(catalogue: Catalogue) -> None:
    # deepseek_chat_response.json: deepseek-chat (0.14 / 0.28 / cached 0.0028)
    # prompt 216 = hit 192 + miss 24, completion 9
    usage = Usage(prompt_tokens=216, completion_tokens=9, cached_tokens=192)
    # 24*0.14 + 192*0.0028 + 9*0.28 = 3.36 + 0.5376 + 2.52 = 6.4176 µ$
    assert cost_usd(usage, price(catalogue, "deepseek", "deepseek-chat")) == exactly(0.0000064176)


def test_cost_deepseek_reasoner(catalogue: Catalogue) -> None:
    # deepseek_reasoner_response.json: prompt 18 (all miss), completion 169 incl. 117 reasoning
    usage = Usage(prompt_tokens=18, completion_tokens=169, reasoning_tokens=117)
    # 18*0.14 + 169*0.28 = 2.52 + 47.32 = 49.84 µ$
    assert cost_usd(usage, price(catalogue, "deepseek", "deepseek-reasoner")) == exactly(0.00004984)


def test_cost_grok_matches_the_billed_ticks(catalogue: Catalogue) -> None:
    # grok_chat_response.json: grok-4-fast-reasoning, prompt 165 of which cached 156,
    # completion 2 *plus* reasoning 125 (xAI reports reasoning outside completion; the
    # adapter folds it in: completion 127, reasoning 125).
    usage = Usage(prompt_tokens=165, completion_tokens=127, cached_tokens=156, reasoning_tokens=125)
    # The sample catalogue has no grok-4-fast; its prices per ../shared/reference/grok.md:
    # 0.20 in / 0.05 cached / 0.50 out, reasoning billed at the output rate.
    cat = catalogue.with_overrides(
        {"grok/grok-4-fast-reasoning": {"input": 0.20, "output": 0.50, "cache_read": 0.05}}
    )
    cost = cost_usd(usage, cat.lookup("grok", "grok-4-fast-reasoning"))
    # 9*0.20 + 156*0.05 + 127*0.50 = 1.8 + 7.8 + 63.5 = 73.1 µ$ = 731 000 ticks of 1e-10 $
    assert cost == exactly(0.0000731)
    body = orjson.loads((FIXTURES / "grok_chat_response.json").read_bytes())
    assert body["usage"]["cost_in_usd_ticks"] == 731_000
    assert cost is not None
    assert round(cost * 1e10) == body["usage"]["cost_in_usd_ticks"]


def test_cost_grok_separate_reasoning_price(catalogue: Catalogue) -> None:
    # grok-3-mini lists reasoning 0.50 separately (0.30 / 0.50 / cached 0.075); same usage
    usage = Usage(prompt_tokens=165, completion_tokens=127, cached_tokens=156, reasoning_tokens=125)
    # 9*0.30 + 156*0.075 + 2*0.50 + 125*0.50 = 2.7 + 11.7 + 1.0 + 62.5 = 77.9 µ$
    grok_3_mini = price(catalogue, "grok", "grok-3-mini")
    assert cost_usd(usage, grok_3_mini) == exactly(0.0000779)
    kinds = [item["kind"] for item in explain(usage, grok_3_mini)["items"]]
    assert kinds == ["input", "cache_read", "output", "reasoning"]


def test_cost_reasoning_at_its_own_price_when_it_differs() -> None:
    usage = Usage(prompt_tokens=100, completion_tokens=50, reasoning_tokens=40)
    # 100*1 + (50-40)*2 + 40*8 = 100 + 20 + 320 = 440 µ$
    assert cost_usd(usage, Price(input=1, output=2, reasoning=8)) == exactly(0.00044)
    # without a reasoning price all 50 output tokens are output: 100*1 + 50*2 = 200 µ$
    assert cost_usd(usage, Price(input=1, output=2)) == exactly(0.0002)


def test_cost_ollama_is_zero_not_unknown(catalogue: Catalogue) -> None:
    # ollama_chat_response.json: prompt_eval_count 26, eval_count 9
    usage = Usage(prompt_tokens=26, completion_tokens=9)
    assert cost_usd(usage, catalogue.lookup("ollama", "qwen3:8b")) == 0.0


def test_cost_unknown_price_is_none() -> None:
    usage = Usage(prompt_tokens=10, completion_tokens=10)
    assert cost_usd(usage, None) is None
    explained = explain(usage, None)
    assert explained["total_usd"] is None
    assert explained["known"] is False
    assert explained["items"] == []
    assert worst_case_cost(10, 10, None) is None


# --- cache pricing -----------------------------------------------------------------------


def test_cost_cache_writes_and_reads_fall_back_to_input() -> None:
    usage = Usage(
        prompt_tokens=1000, completion_tokens=100, cached_tokens=200, cache_write_tokens=300
    )
    # no cache prices: 500*3 + 200*3 + 300*3 + 100*15 = 1500 + 600 + 900 + 1500 = 4500 µ$
    assert cost_usd(usage, Price(input=3, output=15)) == exactly(0.0045)
    # with both: 500*3 + 200*0.30 + 300*3.75 + 100*15 = 1500 + 60 + 1125 + 1500 = 4185 µ$
    both = Price(input=3, output=15, cache_read=0.30, cache_write=3.75)
    assert cost_usd(usage, both) == exactly(0.004185)
    items = {item["kind"]: item for item in explain(usage, Price(input=3, output=15))["items"]}
    assert items["cache_read"]["rate_from"] == "input"
    assert items["cache_write"]["usd_per_million"] == 3


def test_cost_clamps_inconsistent_subsets() -> None:
    # cached > prompt and reasoning > completion: an adapter bug must not give negatives
    usage = Usage(prompt_tokens=10, completion_tokens=5, cached_tokens=50, reasoning_tokens=9)
    # 10 cached at 0.5 + 5 reasoning at 4 = 5 + 20 = 25 µ$
    assert cost_usd(usage, Price(input=1, output=2, cache_read=0.5, reasoning=4)) == exactly(25e-6)


# --- long-context tier -------------------------------------------------------------------


def test_cost_long_context_tier_applies_above_200k(catalogue: Catalogue) -> None:
    pro = price(catalogue, "gemini", "gemini-2.5-pro")  # 1.25/10/0.125; >200k: 2.50/15/0.25
    long = Usage(prompt_tokens=250_000, completion_tokens=1_000, cached_tokens=50_000)
    # 200000*2.50 + 50000*0.25 + 1000*15 = 500000 + 12500 + 15000 = 527500 µ$
    assert cost_usd(long, pro) == exactly(0.5275)
    assert explain(long, pro)["tier"] == "long_context"
    at_limit = Usage(prompt_tokens=200_000, completion_tokens=1_000)
    # exactly 200k is not *over* 200k: 200000*1.25 + 1000*10 = 250000 + 10000 = 260000 µ$
    assert cost_usd(at_limit, pro) == exactly(0.26)
    assert explain(at_limit, pro)["tier"] == "base"


def test_cost_long_context_tier_for_grok(catalogue: Catalogue) -> None:
    grok = price(catalogue, "grok", "grok-4.3")  # 1.25/2.50/0.20; >200k: 2.50/5.00/0.40
    usage = Usage(prompt_tokens=300_000, completion_tokens=2_000, cached_tokens=100_000)
    # 200000*2.50 + 100000*0.40 + 2000*5.00 = 500000 + 40000 + 10000 = 550000 µ$
    assert cost_usd(usage, grok) == exactly(0.55)


def test_tier_for_walks_chained_tiers() -> None:
    top = Price(input=4, output=8)
    middle = Price(input=2, output=4, over_200k=top, over_tokens=500_000)
    base = Price(input=1, output=2, over_200k=middle, over_tokens=128_000)
    assert tier_for(128_000, base) is base
    assert tier_for(128_001, base) is middle
    assert tier_for(600_000, base) is top


# --- explain and worst case --------------------------------------------------------------


def test_explain_items_add_up_to_the_cost(catalogue: Catalogue) -> None:
    usage = Usage(prompt_tokens=2006, completion_tokens=17, cached_tokens=1920, estimated=True)
    gpt_4o = price(catalogue, "openai", "gpt-4o")
    explained = explain(usage, gpt_4o)
    assert explained["known"] is True
    assert explained["estimated"] is True
    assert explained["total_usd"] == cost_usd(usage, gpt_4o)
    assert sum(item["tokens"] for item in explained["items"]) == usage.total_tokens
    assert explained["items"][0] == {
        "kind": "input",
        "tokens": 86,
        "usd_per_million": 2.5,
        "rate_from": "input",
        "usd": exactly(0.000215),
    }
    orjson.dumps(explained)  # JSON-ready for the dashboard


def test_worst_case_cost_bills_everything_at_the_dearest_rates(catalogue: Catalogue) -> None:
    gpt_4o = price(catalogue, "openai", "gpt-4o")
    # 1000*2.50 + 500*10 = 2500 + 5000 = 7500 µ$
    assert worst_case_cost(1000, 500, gpt_4o) == exactly(0.0075)
    pro = price(catalogue, "gemini", "gemini-2.5-pro")
    # long-context tier: 300000*2.50 + 1000*15 = 750000 + 15000 = 765000 µ$
    assert worst_case_cost(300_000, 1000, pro) == exactly(0.765)
    # dearer reasoning and cache-write rates: 100*5 + 10*9 = 500 + 90 = 590 µ$
    dear = Price(input=1, output=2, cache_write=5, reasoning=9)
    assert worst_case_cost(100, 10, dear) == exactly(0.00059)
    assert worst_case_cost(100, 10, catalogue.lookup("ollama", "llama3")) == 0.0
