"""The connections that reach providers, and the one place httpx errors are mapped.

One ``Upstream`` per provider, so each has its own pool size and timeouts:
``connect_timeout`` to connect, ``first_byte_timeout`` for the answer to start,
``read_timeout`` between stream chunks (the relay applies the last two and the
overall deadline with trio cancel scopes). Nothing reads proxy settings from the
environment: a stray ``HTTP_PROXY`` must not reroute provider traffic.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from .errors import UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout
from .http11 import ProviderTransport
from .settings import ProviderSettings


class Upstream:
    """One provider's connections.

    The relay sends through ``transport`` (``http11.ProviderTransport``) directly:
    ``httpx.AsyncClient``'s layers (redirects, auth flows, cookies, event hooks)
    are work a provider call never needs, and the relay applies the first-byte,
    stall and overall deadlines itself. ``client`` is a plain ``httpx.AsyncClient``
    with a small pool of its own, for everything else (model lists, the
    dashboard's connection test).
    """

    def __init__(self, provider: ProviderSettings, ssl_context: ssl.SSLContext) -> None:
        self.first_byte_timeout = provider.first_byte_timeout
        self.idle_timeout = provider.read_timeout
        self.transport = ProviderTransport(
            ssl_context=ssl_context,
            max_connections=provider.max_connections,
            connect_timeout=provider.connect_timeout,
        )
        # httpx's read timeout bounds every read, headers included.
        timeout = httpx.Timeout(
            connect=provider.connect_timeout,
            read=max(provider.first_byte_timeout, provider.read_timeout),
            write=provider.read_timeout,
            pool=provider.connect_timeout,
        )
        self.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(
                verify=ssl_context, limits=httpx.Limits(max_connections=4), retries=0
            ),
            timeout=timeout,
            trust_env=False,
            follow_redirects=False,
        )

    async def send(
        self, method: str, url: str, headers: dict[str, str], content: bytes
    ) -> httpx.Response:
        """Send and return once the response headers are in; the body is still to read."""
        return await self.transport.send(method, url, headers, content)

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.transport.aclose()


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
