"""The httpx clients that reach providers, and the one place httpx errors are mapped.

One ``httpx.AsyncClient`` per provider, so each has its own pool size and
timeouts: ``connect_timeout`` to connect, ``read_timeout`` for the first byte and
between stream chunks. The overall deadline is applied by the relay with a trio
cancel scope, not here. ``trust_env=False``: a stray ``HTTP_PROXY`` must not
reroute provider traffic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from .errors import UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout
from .settings import ProviderSettings


def build_client(provider: ProviderSettings) -> httpx.AsyncClient:
    timeout = httpx.Timeout(
        connect=provider.connect_timeout,
        read=provider.read_timeout,
        write=provider.read_timeout,
        pool=provider.connect_timeout,
    )
    limits = httpx.Limits(
        max_connections=provider.max_connections,
        max_keepalive_connections=provider.max_connections,
        keepalive_expiry=30.0,
    )
    return httpx.AsyncClient(
        timeout=timeout, limits=limits, trust_env=False, follow_redirects=False
    )


@contextmanager
def map_transport_errors(provider: str) -> Iterator[None]:
    """httpx exceptions -> ``UpstreamError`` subclasses (messages name no URL or key)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        what = "connecting to" if isinstance(exc, httpx.ConnectTimeout) else "waiting for"
        raise UpstreamTimeout(f"timed out {what} provider {provider}") from exc
    except httpx.ConnectError as exc:
        raise UpstreamConnectError(f"cannot connect to provider {provider}") from exc
    except httpx.RemoteProtocolError as exc:
        raise UpstreamProtocolError(
            f"provider {provider} closed the connection or broke the protocol"
        ) from exc
    except httpx.TransportError as exc:
        raise UpstreamConnectError(
            f"network error talking to provider {provider}: {exc.__class__.__name__}"
        ) from exc
