"""Remote images -> base64 ``data:`` URLs, for providers that cannot fetch URLs themselves.

Between routing and the adapter on the request path: when the target's adapter sets
``needs_inline_images`` (Gemini, Ollama), ``pipeline.py`` calls
``ImageFetcher.inline`` and every ``image_url.url`` that is ``http(s)`` is fetched
here and replaced by ``data:<mime>;base64,...``. Nothing else on the request path
fetches a URL a client sent.

A client-supplied URL is a server-side request forgery risk, so a fetch is refused
(``BadRequest``, 400, naming ``messages[i].content[j].image_url``) unless:

* the scheme is ``https`` (``http`` only when ``allow_http``), with no credentials;
* every address the host resolves to is public: not loopback, private (10/8,
  172.16/12, 192.168/16, fc00::/7), link-local (169.254/16, fe80::/10), a cloud
  metadata address, multicast, unspecified or reserved, also when embedded in an
  IPv6 address (``::ffff:a.b.c.d``, NAT64, 6to4); hosts in ``allow_hosts`` skip this
  check;
* the answer is 2xx with an ``image/*`` content type and at most ``max_bytes``
  (streamed, counted as it arrives), within ``timeout`` seconds for the whole fetch.

The connection goes to the address that was checked, not to a second resolution
(no DNS rebinding): the URL carries the IP, the ``Host`` header and TLS SNI carry
the name, so the certificate is still verified against the name. Connections are
never reused and cookies never kept, so one fetch cannot leak into another.
Redirects are followed by hand, at most ``max_redirects``, each target checked
again like the first.
"""

from __future__ import annotations

import base64
import http.cookiejar
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpx
import trio

from .errors import BadRequest

MiB = 1024 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ImageRefused(Exception):
    """Why one fetch was refused; turned into a ``BadRequest`` naming the part."""


def refusal_reason(ip: IPAddress) -> str | None:
    """Why connecting to ``ip`` is refused, or None for a public address."""
    if ip in _METADATA:
        return "a cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = refusal_reason(embedded)
            return None if inner is None else f"{inner} (inside an IPv6 address)"
    checks = (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "not a public address"),
    )
    for hit, reason in checks:
        if hit:
            return reason
    return None


def build_image_client() -> httpx.AsyncClient:
    """The client for image fetches: no proxies from the environment, no redirects,
    no pooled connections (each one was opened for one checked name), no cookies."""
    no_cookies = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return httpx.AsyncClient(
        trust_env=False,
        follow_redirects=False,
        cookies=httpx.Cookies(no_cookies),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=0),
    )


class ImageFetcher:
    """Fetches client image URLs under the rules in the module docstring.

    ``statistics()`` counts fetched and refused images.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        max_bytes: int = 20 * MiB,
        timeout: float = 10.0,
        allow_hosts: Iterable[str] = frozenset(),
        allow_http: bool = False,
        max_redirects: int = 3,
        max_images: int = 32,
    ) -> None:
        self.client = client
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.allow_hosts = frozenset(h.lower() for h in allow_hosts)
        self.allow_http = allow_http
        self.max_redirects = max_redirects
        self.max_images = max_images
        self._limiter = trio.CapacityLimiter(8)
        self._fetched = 0
        self._refused = 0

    @classmethod
    def from_settings(cls, client: httpx.AsyncClient, section: Any) -> ImageFetcher:
        """Built from an ``[images]`` settings section; defaults where it is None."""
        if section is None:
            return cls(client)
        return cls(
            client,
            max_bytes=section.max_bytes,
            timeout=section.timeout,
            allow_hosts=section.allow_hosts,
            allow_http=section.allow_http,
        )

    def statistics(self) -> dict[str, int]:
        return {"fetched": self._fetched, "refused": self._refused}

    async def run(self) -> None:
        """Holds the client open for the app's lifetime (app nursery); closes it on exit."""
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await self.client.aclose()

    # -- the body ----------------------------------------------------------------------

    async def inline(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with every remote image URL replaced by a data URL.

        Returns ``body`` itself when there is nothing to fetch; otherwise a copy that
        shares everything but the messages and parts it changed. Raises ``BadRequest``.
        """
        found = list(_remote_images(body))
        if not found:
            return body
        if len(found) > self.max_images:
            raise BadRequest(
                f"too many remote images ({len(found)}); at most {self.max_images} "
                "are fetched per request",
                param="messages",
            )
        results: dict[tuple[int, int], str] = {}
        failures: list[BadRequest] = []
        async with trio.open_nursery() as nursery:
            for i, j, url in found:
                nursery.start_soon(self._fetch_into, i, j, url, results, failures, nursery)
        if failures:
            raise failures[0]
        messages = list(body["messages"])
        for (i, j), data_url in results.items():
            msg = dict(messages[i])
            content = list(msg["content"])
            part = dict(content[j])
            image = part["image_url"]
            part["image_url"] = {**image, "url": data_url} if isinstance(image, dict) else data_url
            content[j] = part
            msg["content"] = content
            messages[i] = msg
        return {**body, "messages": messages}

    async def _fetch_into(
        self,
        i: int,
        j: int,
        url: str,
        results: dict[tuple[int, int], str],
        failures: list[BadRequest],
        nursery: trio.Nursery,
    ) -> None:
        where = f"messages[{i}].content[{j}].image_url"
        try:
            async with self._limiter:
                results[(i, j)] = await self.fetch(url)
        except ImageRefused as exc:
            self._refused += 1
            failures.append(BadRequest(f"{where}: image not fetched: {exc}", param=where))
            nursery.cancel_scope.cancel()  # one refusal fails the request: stop the rest
        else:
            self._fetched += 1

    # -- one URL -----------------------------------------------------------------------

    async def fetch(self, url: str) -> str:
        """The image at ``url`` as a data URL. Raises ``ImageRefused`` saying why."""
        with trio.move_on_after(self.timeout):
            return await self._follow(url)
        raise ImageRefused(f"the fetch took longer than {self.timeout:g}s")

    async def _follow(self, url: str) -> str:
        current = _parse(url)
        for _ in range(self.max_redirects + 1):
            response = await self._open(current)
            try:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise ImageRefused("redirect without a Location header")
                    current = _parse(str(current.join(location)))
                    continue
                return await self._read(response)
            finally:
                await response.aclose()
        raise ImageRefused(f"more than {self.max_redirects} redirects")

    async def _open(self, url: httpx.URL) -> httpx.Response:
        """Check ``url`` and send the request to the address that was checked."""
        if url.scheme != "https" and not (url.scheme == "http" and self.allow_http):
            raise ImageRefused("only https image URLs are fetched")
        if url.userinfo:
            raise ImageRefused("image URLs must not carry credentials")
        host = url.raw_host.decode("ascii").lower()
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = await self._resolve(host, port)
        headers = {
            "host": url.netloc.decode("ascii"),
            "accept": "image/*",
            "accept-encoding": "identity",
            "user-agent": "llm-proxy image fetch",
        }
        extensions = {"sni_hostname": host} if url.scheme == "https" and not _is_ip(host) else {}
        last: Exception | None = None
        for ip in addresses:  # in resolver order; the next one only if connecting failed
            request = self.client.build_request(
                "GET",
                url.copy_with(host=str(ip)),
                headers=headers,
                extensions=extensions,
                timeout=self.timeout,
            )
            try:
                return await self.client.send(request, stream=True)
            except httpx.ConnectError as exc:
                last = exc
            except httpx.HTTPError as exc:
                raise ImageRefused(f"fetching from {host} failed ({type(exc).__name__})") from exc
        raise ImageRefused(f"cannot connect to {host}") from last

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        if _is_ip(host):
            found = [ipaddress.ip_address(host)]
        else:
            try:
                infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise ImageRefused(f"cannot resolve {host}") from exc
            found = []
            for info in infos:
                ip = ipaddress.ip_address(str(info[4][0]).partition("%")[0])
                if ip not in found:
                    found.append(ip)
            if not found:
                raise ImageRefused(f"cannot resolve {host}")
        if host not in self.allow_hosts:
            for ip in found:
                reason = refusal_reason(ip)
                if reason is not None:
                    raise ImageRefused(f"{host} resolves to {ip}, {reason}")
        return found

    async def _read(self, response: httpx.Response) -> str:
        if not 200 <= response.status_code < 300:
            raise ImageRefused(f"the image server answered HTTP {response.status_code}")
        mime = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if not mime.startswith("image/") or len(mime) == len("image/"):
            raise ImageRefused(f"content type {mime or 'missing'!r} is not an image")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise ImageRefused(f"compressed image bodies ({encoding}) are not accepted")
        too_big = ImageRefused(f"the image is larger than {self.max_bytes} bytes")
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise too_big
        parts: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > self.max_bytes:
                    raise too_big
                parts.append(chunk)
        except httpx.HTTPError as exc:
            raise ImageRefused(f"reading the image failed ({type(exc).__name__})") from exc
        if not size:
            raise ImageRefused("the image is empty")
        return f"data:{mime};base64,{base64.b64encode(b''.join(parts)).decode('ascii')}"


def _parse(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ImageRefused("not a valid URL") from exc
    if not parsed.raw_host:
        raise ImageRefused("the URL has no host")
    return parsed


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _remote_images(body: dict[str, Any]) -> Iterable[tuple[int, int, str]]:
    """(message index, part index, url) of every http(s) ``image_url`` part."""
    messages = body.get("messages")
    for i, msg in enumerate(messages if isinstance(messages, list) else ()):
        content = msg.get("content") if isinstance(msg, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else ()):
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str) and url[:8].lower().startswith(("http://", "https://")):
                yield i, j, url
