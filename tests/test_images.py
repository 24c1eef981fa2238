"""gateway/images.py: remote image URLs fetched under SSRF rules, against loopback fakes.

Every refusal is a ``BadRequest`` naming the content part; nothing here patches the
fetcher: the addresses are real, the fake image server is a real HTTP server.
"""

from __future__ import annotations

import ipaddress

import pytest
import trio

from gateway.errors import BadRequest
from gateway.images import ImageFetcher, build_image_client, refusal_reason
from tests.fakes.providers import PNG, PNG_DATA_URL
from tests.fakes.upstream import FakeUpstream, Received, Reply

WHERE = "messages[0].content[1].image_url"


def png_server(req: Received) -> Reply:
    return Reply(body=PNG, content_type="image/png")


@pytest.fixture
async def images(nursery: trio.Nursery) -> FakeUpstream:
    fake = FakeUpstream(default=png_server)
    await fake.start(nursery)
    return fake


@pytest.fixture
async def fetcher():
    client = build_image_client()
    yield ImageFetcher(client, allow_hosts={"127.0.0.1"}, allow_http=True, timeout=2)
    await client.aclose()


def body_with(url: str) -> dict:
    return {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
                ],
            }
        ],
    }


async def refused(fetcher: ImageFetcher, url: str) -> str:
    with pytest.raises(BadRequest) as info:
        await fetcher.inline(body_with(url))
    assert info.value.status == 400
    assert info.value.param == WHERE
    assert info.value.message.startswith(f"{WHERE}: image not fetched: ")
    return info.value.message


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.10.1", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "not a public address"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
    ],
)
def test_refusal_reason_names_non_public_addresses(address, reason):
    assert reason in (refusal_reason(ipaddress.ip_address(address)) or "")


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_refusal_reason_accepts_public_addresses(address):
    assert refusal_reason(ipaddress.ip_address(address)) is None


async def test_fetch_refuses_loopback_private_and_metadata_addresses():
    fetcher = ImageFetcher(build_image_client())
    assert "loopback" in await refused(fetcher, "https://127.0.0.1/cat.png")
    assert "private" in await refused(fetcher, "https://10.0.0.1/cat.png")
    assert "metadata" in await refused(fetcher, "https://169.254.169.254/latest/meta-data/")
    assert "metadata" in await refused(fetcher, "https://[fd00:ec2::254]/")
    assert "loopback" in await refused(fetcher, "https://[::ffff:127.0.0.1]/cat.png")
    assert fetcher.statistics() == {"fetched": 0, "refused": 5}


async def test_fetch_refuses_a_hostname_that_resolves_to_loopback(images):
    fetcher = ImageFetcher(build_image_client(), allow_http=True)
    port = images.url.rpartition(":")[2]
    message = await refused(fetcher, f"http://localhost:{port}/cat.png")
    assert "localhost resolves to" in message
    assert "loopback" in message
    assert images.requests == []


async def test_fetch_refuses_http_unless_allowed(images, fetcher):
    strict = ImageFetcher(fetcher.client, allow_hosts={"127.0.0.1"})
    assert "only https" in await refused(strict, images.url + "/cat.png")
    assert images.requests == []


async def test_fetch_refuses_urls_with_credentials(fetcher, images):
    url = images.url.replace("http://", "http://user:pw@") + "/cat.png"
    assert "credentials" in await refused(fetcher, url)


async def test_fetch_inlines_png_from_an_allowed_host(images, fetcher):
    original = body_with(images.url + "/cat.png")
    inlined = await fetcher.inline(original)
    part = inlined["messages"][0]["content"][1]
    assert part == {"type": "image_url", "image_url": {"url": PNG_DATA_URL, "detail": "low"}}
    assert inlined["messages"][0]["content"][0] == original["messages"][0]["content"][0]
    assert original["messages"][0]["content"][1]["image_url"]["url"].startswith("http://")
    (req,) = images.requests
    assert req.path == "/cat.png"
    assert req.headers["host"] == images.url.removeprefix("http://")
    assert "cookie" not in req.headers
    assert fetcher.statistics()["fetched"] == 1


async def test_fetch_connects_to_the_resolved_address_with_the_name_as_host_header(images):
    """``localhost`` may resolve to ::1 first; the fake listens on 127.0.0.1 only, so
    this also shows the next resolved address is tried when connecting fails."""
    fetcher = ImageFetcher(build_image_client(), allow_hosts={"localhost"}, allow_http=True)
    port = images.url.rpartition(":")[2]
    inlined = await fetcher.inline(body_with(f"http://localhost:{port}/cat.png"))
    assert inlined["messages"][0]["content"][1]["image_url"]["url"] == PNG_DATA_URL
    assert images.requests[-1].headers["host"] == f"localhost:{port}"


async def test_inline_leaves_a_body_without_remote_images_alone(fetcher):
    body = body_with(PNG_DATA_URL)
    assert await fetcher.inline(body) is body
    plain = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert await fetcher.inline(plain) is plain


async def test_fetch_refuses_a_redirect_to_a_refused_address(images, fetcher):
    port = images.url.rpartition(":")[2]
    for location, reason in [
        ("http://10.0.0.1/cat.png", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        (f"http://localhost:{port}/cat.png", "loopback"),
    ]:
        images.push(Reply(status=302, headers={"location": location}))
        assert reason in await refused(fetcher, images.url + "/start")
    assert [r.path for r in images.requests] == ["/start"] * 3


async def test_fetch_follows_up_to_three_redirects_each_checked(images, fetcher):
    images.push(
        Reply(status=301, headers={"location": "/one"}),
        Reply(status=307, headers={"location": images.url + "/two"}),
        Reply(status=302, headers={"location": "/cat.png"}),
    )
    inlined = await fetcher.inline(body_with(images.url + "/start"))
    assert inlined["messages"][0]["content"][1]["image_url"]["url"] == PNG_DATA_URL
    assert [r.path for r in images.requests] == ["/start", "/one", "/two", "/cat.png"]

    images.push(*[Reply(status=302, headers={"location": "/again"}) for _ in range(4)])
    assert "more than 3 redirects" in await refused(fetcher, images.url + "/start")


async def test_fetch_refuses_a_non_image_content_type(images, fetcher):
    images.push(Reply(body=b"<html></html>", content_type="text/html; charset=utf-8"))
    assert "'text/html' is not an image" in await refused(fetcher, images.url + "/page")


async def test_fetch_refuses_an_error_status(images, fetcher):
    images.push(Reply(status=404, body=b"nope", content_type="image/png"))
    assert "HTTP 404" in await refused(fetcher, images.url + "/gone.png")


async def test_fetch_refuses_an_oversize_body(images, fetcher):
    small = ImageFetcher(fetcher.client, allow_hosts={"127.0.0.1"}, allow_http=True, max_bytes=100)
    # Declared too big (Content-Length) ...
    big = b"\x89PNG" + b"0" * 200
    images.push(Reply(body=big, content_type="image/png", headers={"content-length": "204"}))
    assert "larger than 100 bytes" in await refused(small, images.url + "/big.png")
    # ... or found too big while streaming (chunked, no length).
    images.push(Reply(chunks=[b"0" * 60] * 3, content_type="image/png"))
    assert "larger than 100 bytes" in await refused(small, images.url + "/big.png")


async def test_fetch_gives_up_after_its_time_limit(images, fetcher):
    quick = ImageFetcher(fetcher.client, allow_hosts={"127.0.0.1"}, allow_http=True, timeout=0.1)
    images.push(Reply(body=PNG, content_type="image/png", first_byte_delay=1.0))
    with trio.fail_after(1):
        assert "longer than 0.1s" in await refused(quick, images.url + "/slow.png")


async def test_one_refused_image_fails_the_request(images, fetcher):
    body = body_with(images.url + "/cat.png")
    body["messages"].append(
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://10.1.2.3/x.png"}}],
        }
    )
    with pytest.raises(BadRequest) as info:
        await fetcher.inline(body)
    assert info.value.param == "messages[1].content[0].image_url"
