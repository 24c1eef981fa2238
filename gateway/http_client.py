"""The httpx clients that reach providers, and the one place httpx errors are mapped.

One ``httpx.AsyncClient`` per provider, so each has its own pool size and
timeouts: ``connect_timeout`` to connect, ``read_timeout`` for the first byte and
between stream chunks. The overall deadline is applied by the relay with a trio
cancel scope, not here. ``trust_env=False``: a stray ``HTTP_PROXY`` must not
reroute provider traffic.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from .errors import UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout
from .settings import ProviderSettings


class _Lease:
    __slots__ = ("_busy", "shard")

    def __init__(self, busy: list[int], shard: int) -> None:
        self._busy = busy
        self.shard = shard

    def __enter__(self) -> int:
        return self.shard

    def __exit__(self, *exc: object) -> None:
        self._busy[self.shard] -= 1


#: Connections per pool shard. httpcore checks every pooled connection on each
#: request and each release, so its cost grows with the pool; small shards keep
#: that check short (at 32 busy connections one pool spent a third of the CPU there).
SHARD_SIZE = 8


class Upstream:
    """One provider's connection pool, sharded.

    The relay sends through the transports directly: ``httpx.AsyncClient``'s layers
    (redirects, auth flows, cookies, event hooks) are work a provider call never
    needs. A request goes to the shard with the fewest requests in flight
    (``lease``/``release``). ``client`` uses the first shard for everything else
    (model lists, the dashboard's connection test).
    """

    def __init__(self, provider: ProviderSettings, ssl_context: ssl.SSLContext) -> None:
        # httpx's read timeout bounds every read, headers included; the relay applies
        # the shorter of the two limits to each phase itself.
        timeout = httpx.Timeout(
            connect=provider.connect_timeout,
            read=max(provider.first_byte_timeout, provider.read_timeout),
            write=provider.read_timeout,
            pool=provider.connect_timeout,
        )
        self.first_byte_timeout = provider.first_byte_timeout
        self.idle_timeout = provider.read_timeout
        shards = max(1, -(-provider.max_connections // SHARD_SIZE))
        per_shard = -(-provider.max_connections // shards)
        limits = httpx.Limits(
            max_connections=per_shard, max_keepalive_connections=per_shard, keepalive_expiry=30.0
        )
        self.transports = [
            # One TLS context for all: building one loads the CA bundle (~25 ms).
            httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits, retries=0)
            for _ in range(shards)
        ]
        self._busy = [0] * shards
        self.timeout = timeout.as_dict()
        self.client = httpx.AsyncClient(
            transport=self.transports[0], timeout=timeout, trust_env=False, follow_redirects=False
        )

    def lease(self) -> _Lease:
        """``with upstream.lease() as shard:`` the least busy shard, busy until the end."""
        busy = self._busy
        shard = busy.index(min(busy))
        busy[shard] += 1
        return _Lease(busy, shard)

    async def send(
        self, shard: int, method: str, url: str, headers: dict[str, str], content: bytes
    ) -> httpx.Response:
        """Send and return once the response headers are in; the body is still to read."""
        request = httpx.Request(
            method, url, headers=headers, content=content, extensions={"timeout": self.timeout}
        )
        response = await self.transports[shard].handle_async_request(request)
        response.request = request
        return response

    async def aclose(self) -> None:
        await self.client.aclose()
        for transport in self.transports[1:]:
            await transport.aclose()


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
