"""gateway/reasoning.py: the bounded store of DeepSeek reasoning by tool-call id."""

from __future__ import annotations

from gateway.reasoning import ReasoningStore


def test_reasoning_store_view_reads_one_clients_entries():
    store = ReasoningStore()
    store.remember(1, {"call_a": "because A", "call_b": "because A"})
    store.remember(2, {"call_c": "because C"})
    view = store.view(1)
    assert view.get("call_a") == "because A"
    assert view.get("call_c") is None
    assert dict(view) == {"call_a": "because A", "call_b": "because A"}
    assert len(store.view(2)) == 1


def test_reasoning_store_evicts_least_recently_used_by_count():
    store = ReasoningStore(max_entries=2)
    store.remember(1, {"a": "x"})
    store.remember(1, {"b": "y"})
    assert store.view(1)["a"] == "x"  # a is now the most recently used
    store.remember(1, {"c": "z"})
    assert set(store.view(1)) == {"a", "c"}
    assert store.statistics()["evicted"] == 1


def test_reasoning_store_evicts_by_total_characters():
    store = ReasoningStore(max_chars=10)
    store.remember(None, {"a": "12345"})
    store.remember(None, {"b": "123456"})
    assert set(store.view(None)) == {"b"}
    assert store.statistics()["chars"] == 6
    store.remember(None, {"huge": "x" * 11})  # larger than the whole store: not kept
    assert set(store.view(None)) == {"b"}


def test_reasoning_store_replaces_and_skips_empty_text():
    store = ReasoningStore()
    store.remember(1, {"a": "old"})
    store.remember(1, {"a": "newer", "b": ""})
    assert dict(store.view(1)) == {"a": "newer"}
    assert store.statistics() == {"entries": 1, "chars": 5, "evicted": 0}
