"""Every adapter in ADAPTERS passes the same conformance suite (see contract.py)."""

from __future__ import annotations

import pytest

from gateway.providers import ADAPTERS
from gateway.providers.base import ProviderAdapter
from tests.providers import contract
from tests.providers.wires import WIRES, Wire

KINDS = sorted(ADAPTERS)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def wire(kind: str) -> Wire:
    return WIRES[kind]()


@pytest.fixture
def adapter(kind: str) -> ProviderAdapter:
    return ADAPTERS[kind]()


def test_contract_covers_every_registered_adapter() -> None:
    assert set(WIRES) == set(ADAPTERS)


def test_adapter_kind_matches_its_registry_key(kind: str) -> None:
    assert ADAPTERS[kind].kind == kind


def test_adapter_parses_plain_text_response(adapter: ProviderAdapter, wire: Wire) -> None:
    contract.check_text_response(adapter, wire)


@pytest.mark.parametrize("include_usage", [True, False])
def test_adapter_streams_text_in_openai_chunks(
    adapter: ProviderAdapter, wire: Wire, include_usage: bool
) -> None:
    contract.check_text_stream(adapter, wire, include_usage=include_usage)


def test_adapter_builds_tool_round_trip_request(adapter: ProviderAdapter, wire: Wire) -> None:
    contract.check_tool_request(adapter, wire)


def test_adapter_returns_tool_calls_in_openai_shape(adapter: ProviderAdapter, wire: Wire) -> None:
    contract.check_tool_response(adapter, wire)


def test_adapter_streams_tool_calls_in_openai_shape(adapter: ProviderAdapter, wire: Wire) -> None:
    contract.check_tool_stream(adapter, wire)


def test_adapter_sends_data_url_image_or_refuses_without_vision(
    adapter: ProviderAdapter, wire: Wire
) -> None:
    contract.check_image_request(adapter, wire)


def test_adapter_normalises_usage_so_totals_add_up(adapter: ProviderAdapter, wire: Wire) -> None:
    contract.check_usage(adapter, wire)


def test_adapter_maps_finish_reasons(adapter: ProviderAdapter, wire: Wire) -> None:
    contract.check_finish_reasons(adapter, wire)


def test_adapter_classifies_error_statuses(adapter: ProviderAdapter, wire: Wire) -> None:
    contract.check_errors(adapter, wire)


def test_adapter_lists_models_with_key_in_header_only(adapter: ProviderAdapter, wire: Wire) -> None:
    contract.check_models(adapter, wire)


def test_adapter_rejects_malformed_stream_event(adapter: ProviderAdapter, wire: Wire) -> None:
    contract.check_malformed_stream_event(adapter, wire)
