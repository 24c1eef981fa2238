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


class Upstream:
    """One provider's connection pool.

    The relay sends through the transport directly: ``httpx.AsyncClient``'s layers
    (redirects, auth flows, cookies, event hooks) are work a provider call never
    needs, about a tenth of the gateway's CPU per request. ``client`` shares the same
    pool for everything else (model lists, the dashboard's connection test).
    """

    def __init__(self, provider: ProviderSettings) -> None:
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
        self.transport = httpx.AsyncHTTPTransport(limits=limits, retries=0)
        self.timeout = timeout.as_dict()
        self.client = httpx.AsyncClient(
            transport=self.transport, timeout=timeout, trust_env=False, follow_redirects=False
        )

    async def send(
        self, method: str, url: str, headers: dict[str, str], content: bytes
    ) -> httpx.Response:
        """Send and return once the response headers are in; the body is still to read."""
        request = httpx.Request(
            method, url, headers=headers, content=content, extensions={"timeout": self.timeout}
        )
        response = await self.transport.handle_async_request(request)
        response.request = request
        return response

    async def aclose(self) -> None:
        await self.client.aclose()


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
