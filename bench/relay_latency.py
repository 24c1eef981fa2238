"""How long a streamed chunk spends inside the gateway: upstream send -> client receive.

    .venv/bin/python bench/relay_latency.py [STREAMS]

Runs a fake provider and the gateway in this process (hypercorn on loopback),
streams STREAMS answers (default 50) of 10 chunks sent 50 ms apart, and compares
when the provider wrote each chunk with when the client read it. The figure includes
two loopback hops and the client's own parsing, so it is an upper bound on the
gateway's share.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import make_settings, start_gateway  # noqa: E402
from tests.fakes.upstream import FakeUpstream, Reply, stream_reply  # noqa: E402


def reply() -> Reply:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    events: list[dict[str, object] | str] = [
        {**base, "choices": [{"index": 0, "delta": {"content": f"t{i}"}, "finish_reason": None}]}
        for i in range(10)
    ]
    events += [{**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, "[DONE]"]
    return stream_reply(events, chunk_delay=0.05)


async def main(streams: int) -> None:
    delays: list[float] = []
    async with trio.open_nursery() as nursery:
        upstream = FakeUpstream(default=lambda req: reply())
        await upstream.start(nursery)
        gw = await start_gateway(nursery, make_settings(Path(tempfile.mkdtemp()), upstream.url))
        async with gw.client() as client:
            for _ in range(streams):
                sent = reply()
                upstream.push(sent)
                arrived: list[float] = []
                async with client.stream(
                    "POST",
                    "/v1/chat/completions",
                    json={
                        "model": "gpt-4o",
                        "stream": True,
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                ) as resp:
                    async for line in resp.aiter_lines():
                        if line.startswith("data: {") and '"content":"t' in line:
                            arrived.append(time.monotonic())
                delays += [a - s for a, s in zip(arrived, sent.sent_at, strict=False)]
        await gw.aclose()
        nursery.cancel_scope.cancel()
    ms = sorted(d * 1000 for d in delays)
    print(
        json.dumps(
            {
                "chunks": len(ms),
                "p50_ms": round(statistics.median(ms), 3),
                "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 3),
                "max_ms": round(ms[-1], 3),
            }
        )
    )


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 50)
