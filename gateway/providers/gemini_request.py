"""OpenAI Chat Completions body -> Gemini ``generateContent`` body (step 5, request side).

Pure functions used by ``gemini.py``; no I/O, no state. What it translates:

* ``system``/``developer`` messages -> ``systemInstruction``; ``assistant`` -> ``model``;
  ``tool`` results -> ``functionResponse`` parts of a ``user`` turn, matched **by name**
  through the assistant ``tool_calls`` ids earlier in the history; consecutive turns
  with the same role are merged (Gemini wants user/model alternation).
* Images must arrive as base64 ``data:`` URLs (the pipeline inlines remote URLs before
  calling the adapter, see ``GeminiAdapter.needs_inline_images``); anything else is a
  ``BadRequest``.
* Thought signatures ride inside the tool-call ids we hand out (``new_call_id``) and
  are put back on the ``functionCall`` part when the client replays the turn.
* Function schemas are reduced to the OpenAPI subset Gemini accepts (``gemini_schema.py``).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import orjson

from ..errors import BadRequest
from .gemini_schema import clean_schema

#: Sent on the first functionCall of a model turn whose signature we do not know
#: (history from another provider, or ids rewritten by a client). Gemini 3 rejects a
#: turn without one; this is the documented value for history it did not produce.
SKIP_SIGNATURE = "skip_thought_signature_validator"

_STD_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_CALL_ID = re.compile(r"(call_[0-9a-f]+)_(ts|tsr)_(.+)", re.S)
_TO_URLSAFE = str.maketrans("+/", "-_")
_FROM_URLSAFE = str.maketrans("-_", "+/")
_DATA_URL = re.compile(r"data:([^;,]*)(?:;[^;,]*)*?;base64,(.*)", re.S)

_TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
#: reasoning_effort -> thinkingBudget for 2.x models (Gemini 3 uses thinkingLevel).
_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}


# -- tool-call ids carrying thought signatures ------------------------------------------


def new_call_id(signature: str | None) -> str:
    """A fresh OpenAI tool-call id; a thought signature is folded in so it round-trips.

    Standard base64 signatures are stored URL-safe without padding (``_ts_``), anything
    else verbatim (``_tsr_``); ``signature_of`` reverses both.
    """
    base = f"call_{secrets.token_hex(12)}"
    if not signature:
        return base
    if _STD_B64.fullmatch(signature) and len(signature) % 4 == 0:
        return f"{base}_ts_{signature.rstrip('=').translate(_TO_URLSAFE)}"
    return f"{base}_tsr_{signature}"


def signature_of(call_id: str) -> str | None:
    """The thought signature folded into an id by ``new_call_id``, if any."""
    match = _CALL_ID.fullmatch(call_id)
    if match is None:
        return None
    if match[2] == "tsr":
        return match[3]
    sig = match[3].translate(_FROM_URLSAFE)
    return sig + "=" * (-len(sig) % 4)


# -- body --------------------------------------------------------------------------------


def build_body(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The Gemini request body for a client's OpenAI body. Raises ``BadRequest``."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise BadRequest("'messages' must be a list", param="messages")
    system, contents = _contents(messages)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        out["tools"] = [{"functionDeclarations": [_declaration(t, i) for i, t in enumerate(tools)]}]
        config = _tool_config(body.get("tool_choice"))
        if config is not None:
            out["toolConfig"] = {"functionCallingConfig": config}
    generation = _generation_config(body, model)
    if generation:
        out["generationConfig"] = generation
    return out


def _contents(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    names = _call_names(messages)
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise BadRequest(f"messages[{i}] must be an object", param=f"messages[{i}]")
        role = msg.get("role")
        if role in ("system", "developer"):
            text = _text(msg.get("content"), i)
            if text:
                system.append({"text": text})
            continue
        if role == "user":
            gemini_role, parts = "user", _user_parts(msg.get("content"), i)
        elif role == "assistant":
            gemini_role, parts = "model", _model_parts(msg, i)
        elif role in ("tool", "function"):
            gemini_role, parts = "user", [_function_response(msg, names, i)]
        else:
            raise BadRequest(
                f"messages[{i}].role {role!r} is not supported", param=f"messages[{i}].role"
            )
        if not parts:
            continue
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": gemini_role, "parts": parts})
    return system, contents


def _call_names(messages: list[Any]) -> dict[str, str]:
    """tool_call_id -> function name, from every assistant turn in the history."""
    names: dict[str, str] = {}
    for msg in messages:
        calls = msg.get("tool_calls") if isinstance(msg, dict) else None
        for call in calls if isinstance(calls, list) else ():
            fn = call.get("function") if isinstance(call, dict) else None
            if (
                isinstance(fn, dict)
                and isinstance(call.get("id"), str)
                and isinstance(fn.get("name"), str)
            ):
                names[call["id"]] = fn["name"]
    return names


def _text(content: Any, i: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
                raise BadRequest(
                    f"messages[{i}]: only text content is allowed here",
                    param=f"messages[{i}].content",
                )
            texts.append(str(part.get("text") or part.get("refusal") or ""))
        return "\n".join(t for t in texts if t)
    raise BadRequest(
        f"messages[{i}].content must be a string or a list", param=f"messages[{i}].content"
    )


def _user_parts(content: Any, i: int) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        text = _text(content, i)
        return [{"text": text}] if text else []
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        where = f"messages[{i}].content[{j}]"
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append(_inline(url, where))
        elif kind == "file" and isinstance(part.get("file"), dict):
            parts.append(_inline(part["file"].get("file_data"), where))
        elif kind == "input_audio" and isinstance(part.get("input_audio"), dict):
            audio = part["input_audio"]
            fmt = audio.get("format") or "wav"
            parts.append({"inlineData": {"mimeType": f"audio/{fmt}", "data": audio.get("data")}})
        else:
            raise BadRequest(f"{where}: content part type {kind!r} is not supported", param=where)
    return parts


def _inline(url: Any, where: str) -> dict[str, Any]:
    """A base64 data URL -> ``inlineData``. Remote URLs should have been inlined already."""
    match = _DATA_URL.fullmatch(url) if isinstance(url, str) else None
    if match is None or not match[1]:
        raise BadRequest(
            f"{where}: images and files must be inlined as base64 data URLs "
            "(data:<mime>;base64,...) for this provider",
            param=where,
        )
    return {"inlineData": {"mimeType": match[1], "data": match[2]}}


def _model_parts(msg: dict[str, Any], i: int) -> list[dict[str, Any]]:
    text = _text(msg.get("content"), i)
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    calls = msg.get("tool_calls")
    for j, call in enumerate(calls if isinstance(calls, list) else ()):
        fn = call.get("function") if isinstance(call, dict) else None
        where = f"messages[{i}].tool_calls[{j}]"
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise BadRequest(f"{where} needs a function name", param=where)
        part: dict[str, Any] = {"functionCall": {"name": fn["name"], "args": _args(fn, where)}}
        sig = signature_of(call["id"]) if isinstance(call.get("id"), str) else None
        if sig is None and j == 0:
            sig = SKIP_SIGNATURE
        if sig is not None:
            part["thoughtSignature"] = sig
        parts.append(part)
    return parts


def _args(fn: dict[str, Any], where: str) -> dict[str, Any]:
    raw = fn.get("arguments")
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        args = orjson.loads(raw) if isinstance(raw, str | bytes) else None
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        raise BadRequest(f"{where}.function.arguments must be a JSON object", param=where)
    return args


def _function_response(msg: dict[str, Any], names: dict[str, str], i: int) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    name = names.get(call_id) if isinstance(call_id, str) else None
    name = name or (msg["name"] if isinstance(msg.get("name"), str) else None)
    if not name:
        raise BadRequest(
            f"messages[{i}]: tool_call_id {call_id!r} matches no earlier assistant tool call",
            param=f"messages[{i}].tool_call_id",
        )
    text = _text(msg.get("content"), i)
    response: Any = None
    if text.lstrip().startswith("{"):
        try:
            response = orjson.loads(text)
        except orjson.JSONDecodeError:
            response = None
    if not isinstance(response, dict):
        response = {"result": text}  # Gemini wants an object
    return {"functionResponse": {"name": name, "response": response}}


# -- tools -------------------------------------------------------------------------------


def _declaration(tool: Any, i: int) -> dict[str, Any]:
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(fn, dict) or tool.get("type", "function") != "function":
        raise BadRequest(f"tools[{i}]: only function tools are supported", param=f"tools[{i}]")
    if not isinstance(fn.get("name"), str):
        raise BadRequest(f"tools[{i}].function.name is required", param=f"tools[{i}]")
    decl: dict[str, Any] = {"name": fn["name"]}
    if isinstance(fn.get("description"), str):
        decl["description"] = fn["description"]
    params = fn.get("parameters")
    if isinstance(params, dict):
        schema = clean_schema(params)
        # Gemini rejects an OBJECT schema with no properties ("should be non-empty").
        if schema.get("properties") or schema.get("type") not in ("object", None):
            decl["parameters"] = schema
    return decl


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _TOOL_MODES:
        return {"mode": _TOOL_MODES[choice]}
    fn = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(fn, dict) and isinstance(fn.get("name"), str):
        return {"mode": "ANY", "allowedFunctionNames": [fn["name"]]}
    raise BadRequest("unsupported tool_choice", param="tool_choice")


# -- generation config ---------------------------------------------------------------------


def _generation_config(body: dict[str, Any], model: str) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    for src, dst in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(src) is not None:
            cfg[dst] = body[src]
    limit = body.get("max_completion_tokens")
    limit = limit if limit is not None else body.get("max_tokens")
    if limit is not None:
        cfg["maxOutputTokens"] = limit
    stop = body.get("stop")
    if isinstance(stop, str):
        cfg["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        cfg["stopSequences"] = stop
    n = body.get("n")
    if n is not None and n != 1:
        raise BadRequest("n > 1 is not supported for this provider", param="n")
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in ("json_object", "json_schema"):
        cfg["responseMimeType"] = "application/json"
        spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
        if (
            kind == "json_schema"
            and isinstance(spec, dict)
            and isinstance(spec.get("schema"), dict)
        ):
            cfg["responseJsonSchema"] = spec["schema"]  # full JSON Schema is accepted here
    thinking = _thinking(body.get("reasoning_effort"), model)
    if thinking:
        cfg["thinkingConfig"] = thinking
    return cfg


def _thinking(effort: Any, model: str) -> dict[str, Any] | None:
    """reasoning_effort -> thinkingConfig; thought summaries are requested with it."""
    if not isinstance(effort, str) or effort not in _BUDGETS:
        return None
    if model.removeprefix("models/").startswith("gemini-3"):
        if effort == "none":
            return None  # Gemini 3 cannot switch thinking off
        return {"thinkingLevel": effort.upper(), "includeThoughts": True}
    budget = _BUDGETS[effort]
    return {"thinkingBudget": budget, "includeThoughts": budget > 0}
