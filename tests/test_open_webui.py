"""Open WebUI as a client (issue #7): the request sequence it sends, replayed.

Everything here follows ``../shared/reference/open-webui.md`` (observed on Open
WebUI 0.12.4): its headers, ``GET /v1/models`` before each chat, the UI's streamed
chat (``stream``, ``model``, ``messages``, ``tools`` and nothing else), the
background tasks (title, follow-ups, tags: non-streamed, one ``### Task:`` user
message, JSON expected back in the content) and how it reads a stream
(``reasoning_content``, then ``reasoning``, then ``thinking``; then ``content``;
a usage-only final chunk; ``[DONE]``). Each response is parsed the way Open WebUI
parses it.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.conftest import Gateway
from tests.fakes.upstream import FakeUpstream, Reply, fixture, sse_events, stream_reply

MODEL = "gpt-4o"


def headers(gw: Gateway) -> dict[str, str]:
    """Exactly what Open WebUI sends (aiohttp adds content-type for a JSON body)."""
    return {
        "user-agent": "Python/3.11 aiohttp/3.12.15",
        "authorization": f"Bearer {gw.key}",
        "accept": "*/*",
        "accept-encoding": "gzip, deflate, br",
    }


def owui_client(gw: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gw.base_url, headers=headers(gw), timeout=10)


def builtin_tools() -> list[dict[str, Any]]:
    """36 function tools, about 24 KB of JSON schema, like Open WebUI's built-ins."""
    tools = []
    for i in range(36):
        props = {
            f"arg_{j}": {
                "type": "string",
                "description": f"Parameter {j} of tool {i}: " + "lorem ipsum dolor " * 2,
            }
            for j in range(5)
        }
        tools.append(
            {
                "type": "function",
                "function": {
                    "name": f"builtin_tool_{i}",
                    "description": f"Built-in tool number {i}. " + "Does a useful thing. " * 3,
                    "parameters": {"type": "object", "properties": props, "required": ["arg_0"]},
                },
            }
        )
    assert 20_000 < len(json.dumps(tools)) < 30_000
    return tools


class StreamView:
    """What Open WebUI takes out of a stream."""

    def __init__(self) -> None:
        self.reasoning = ""
        self.content = ""
        self.usage: dict[str, Any] | None = None
        self.done = False
        self.finish_reason: str | None = None


def read_like_open_webui(body: bytes) -> StreamView:
    view = StreamView()
    for line in body.decode().splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            view.done = True
            continue
        chunk = json.loads(data)
        assert "error" not in chunk, chunk
        if chunk.get("usage"):
            view.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            view.reasoning += (
                delta.get("reasoning_content")
                or delta.get("reasoning")
                or delta.get("thinking")
                or ""
            )
            view.content += delta.get("content") or ""
            view.finish_reason = choice.get("finish_reason") or view.finish_reason
    return view


async def get_models(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    resp = await client.get("/models")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["object"] == "list"
    return [(m["id"], m["owned_by"]) for m in body["data"]]


async def stream_chat(client: httpx.AsyncClient, payload: dict[str, Any]) -> StreamView:
    async with client.stream("POST", "/chat/completions", json=payload) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        body = await resp.aread()
    assert body.endswith(b"data: [DONE]\n\n")
    return read_like_open_webui(body)


def task_reply(content: dict[str, Any]) -> Reply:
    answer = json.loads(fixture("openai_chat_response.json"))
    answer["choices"][0]["message"]["content"] = json.dumps(content)
    return Reply(body=json.dumps(answer).encode())


TITLE_PROMPT = """### Task:
Generate a concise, 3-5 word title with an emoji summarizing the chat history.
### Guidelines:
- The title should clearly represent the main theme or subject of the conversation.
- Write the title in the chat's primary language; default to English if multilingual.
### Output:
JSON format: { "title": "your concise title here" }
### Chat History:
<chat_history>
USER: Which is larger, 9.11 or 9.8?
</chat_history>"""

FOLLOW_UPS_PROMPT = """### Task:
Suggest 3-5 relevant follow-up questions or prompts that the user might naturally ask next
in this conversation as a **user**, based on the chat history.
### Output:
JSON format: { "follow_ups": ["Question 1?", "Question 2?", "Question 3?"] }
### Chat History:
<chat_history>
USER: Which is larger, 9.11 or 9.8?
ASSISTANT: 9.8 is larger.
</chat_history>"""

TAGS_PROMPT = """### Task:
Generate 1-3 broad tags categorizing the main themes of the chat history, along with 1-3
more specific subtopic tags.
### Output:
JSON format: { "tags": ["tag1", "tag2", "tag3"] }
### Chat History:
<chat_history>
USER: Which is larger, 9.11 or 9.8?
ASSISTANT: 9.8 is larger.
</chat_history>"""


async def run_task(client: httpx.AsyncClient, prompt: str, **extra: Any) -> dict[str, Any]:
    payload = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "stream": False,
        **extra,
    }
    resp = await client.post("/chat/completions", json=payload)
    assert resp.status_code == 200
    # Open WebUI takes the JSON object out of choices[0].message.content.
    content = resp.json()["choices"][0]["message"]["content"]
    parsed = json.loads(content[content.index("{") : content.rindex("}") + 1])
    assert isinstance(parsed, dict)
    return parsed


async def test_a_new_chat_as_open_webui_sends_it(gateway: Gateway, upstream: FakeUpstream):
    tools = builtin_tools()
    question = [{"role": "user", "content": "Which is larger, 9.11 or 9.8?"}]
    deepseek_like = sse_events(fixture("deepseek_reasoner_stream.sse"))
    upstream.push(
        task_reply({"title": "🔢 Comparing Decimal Numbers"}),
        Reply(chunks=deepseek_like, content_type="text/event-stream"),
        task_reply({"follow_ups": ["Why is 9.8 larger?", "How do decimals compare?"]}),
        task_reply({"tags": ["Math", "Decimals"]}),
    )
    async with owui_client(gateway) as client:
        assert await get_models(client) == [("gpt-4o", "openai")]
        title = await run_task(client, TITLE_PROMPT, max_tokens=1000)
        assert title == {"title": "🔢 Comparing Decimal Numbers"}
        assert await get_models(client)  # again before the chat
        view = await stream_chat(
            client, {"stream": True, "model": MODEL, "messages": question, "tools": tools}
        )
        follow_ups = await run_task(client, FOLLOW_UPS_PROMPT)
        tags = await run_task(client, TAGS_PROMPT)
    assert follow_ups["follow_ups"][0] == "Why is 9.8 larger?"
    assert tags == {"tags": ["Math", "Decimals"]}

    # The reasoning shows as a "Thought for ..." block, then the answer.
    expected = read_like_open_webui(fixture("deepseek_reasoner_stream.sse"))
    assert view.reasoning == expected.reasoning
    assert view.reasoning.startswith("Compare 9.11")
    assert view.content == expected.content
    assert view.finish_reason == "stop"

    # The UI chat went upstream with its tools intact, and the gateway asked for usage.
    chat = upstream.requests[1].json()
    assert chat["tools"] == tools
    assert chat["stream_options"] == {"include_usage": True}
    assert [r.json()["stream"] for r in upstream.requests] == [False, True, False, False]
    assert upstream.requests[0].json()["max_tokens"] == 1000

    # Every call is a logged request with usage, though the client never asked for it.
    rows = await gateway.wait_rows(4)
    assert [r["stream"] for r in rows] == [0, 1, 0, 0]
    assert all(r["status"] == 200 and r["client_name"] == "test-client" for r in rows)
    assert rows[1]["prompt_tokens"] == 18
    assert rows[1]["completion_tokens"] == 169
    assert rows[1]["reasoning_tokens"] == 117
    assert rows[1]["tokens_estimated"] == 0


async def test_usage_chunk_is_recorded_when_asked(gateway: Gateway, upstream: FakeUpstream):
    upstream.push(Reply(chunks=sse_events(fixture("openai_stream_text.sse"))))
    async with owui_client(gateway) as client:
        view = await stream_chat(
            client,
            {
                "stream": True,
                "model": MODEL,
                "messages": [{"role": "user", "content": "Hi"}],
                "stream_options": {"include_usage": True},
                "temperature": 0.8,
                "max_tokens": 512,
            },
        )
    assert view.content
    assert view.usage is not None
    assert (
        view.usage["total_tokens"] == view.usage["prompt_tokens"] + view.usage["completion_tokens"]
    )
    sent = upstream.requests[-1].json()
    assert sent["temperature"] == 0.8
    assert sent["max_tokens"] == 512


async def test_later_turn_and_reasoning_variants(gateway: Gateway, upstream: FakeUpstream):
    """A second turn resends [user, assistant (content only), user]; reasoning under the
    other names Open WebUI reads (``reasoning``, ``thinking``) passes through as well."""
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": MODEL}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    upstream.push(
        stream_reply(
            [
                chunk({"role": "assistant", "reasoning": "Think A. "}),
                chunk({"thinking": "Think B."}),
                chunk({"content": "Answer."}),
                chunk({}, "stop"),
                "[DONE]",
            ]
        )
    )
    messages = [
        {"role": "user", "content": "Which is larger, 9.11 or 9.8?"},
        {"role": "assistant", "content": "9.8 is larger."},
        {"role": "user", "content": "Why?"},
    ]
    async with owui_client(gateway) as client:
        view = await stream_chat(client, {"stream": True, "model": MODEL, "messages": messages})
    assert view.reasoning == "Think A. Think B."
    assert view.content == "Answer."
    assert upstream.requests[-1].json()["messages"] == messages


async def test_stream_without_done_from_upstream_still_ends_with_done(
    gateway: Gateway, upstream: FakeUpstream
):
    events = [e for e in sse_events(fixture("openai_stream_text.sse")) if b"[DONE]" not in e]
    upstream.push(Reply(chunks=events))
    async with owui_client(gateway) as client:
        view = await stream_chat(
            client,
            {"stream": True, "model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
        )
    assert view.done
    assert view.content


async def test_errors_are_what_open_webui_shows(gateway: Gateway):
    async with owui_client(gateway) as client:
        resp = await client.post(
            "/chat/completions",
            json={
                "model": "no-such-model",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
        )
    # Open WebUI shows error.message from an OpenAI-style error body.
    assert resp.status_code == 404
    assert "no-such-model" in resp.json()["error"]["message"]
