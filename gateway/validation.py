"""Client request validation (pure): bytes -> a checked ``ChatRequest``.

Runs before routing so malformed input gets a precise 400 naming the parameter,
in OpenAI's envelope, and never reaches a provider. Only the shapes the gateway
relies on are checked; unknown fields pass through to the provider untouched.
"""

from __future__ import annotations

from typing import Any

import orjson

from .errors import BadRequest
from .providers.base import ChatRequest

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_NUMBER_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_INT_FIELDS = ("max_tokens", "max_completion_tokens", "n", "seed", "top_logprobs")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def parse_chat_request(raw: bytes) -> ChatRequest:
    if not raw.strip():
        raise BadRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"We could not parse the JSON body of your request: {exc.msg} "
            f"(line {exc.lineno}, column {exc.colno})."
        ) from exc
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        raise BadRequest("you must provide a model parameter", param="model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest(
            f"model must be a non-empty string, got {_type_name(model)}.", param="model"
        )
    messages = body.get("messages")
    if messages is None:
        raise BadRequest("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array.", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise BadRequest(f"messages[{i}] must be an object.", param=f"messages[{i}]")
        role = m.get("role")
        if role not in _ROLES:
            raise BadRequest(
                f"messages[{i}].role must be one of {sorted(_ROLES)}, got {role!r}.",
                param=f"messages[{i}].role",
            )
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise BadRequest(
                f"messages[{i}].content must be a string or an array.",
                param=f"messages[{i}].content",
            )
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean.", param="stream")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise BadRequest("'stream_options' must be an object.", param="stream_options")
    for key in _NUMBER_FIELDS:
        v = body.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise BadRequest(f"'{key}' must be a number, got {_type_name(v)}.", param=key)
    for key in _INT_FIELDS:
        v = body.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise BadRequest(f"'{key}' must be a non-negative integer.", param=key)
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise BadRequest("'tools' must be an array.", param="tools")
    include_usage = bool(stream and isinstance(opts, dict) and opts.get("include_usage"))
    return ChatRequest(body=body, model=model.strip(), stream=stream, include_usage=include_usage)
