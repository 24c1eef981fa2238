"""Token counts the gateway makes itself: tiktoken where it loads, an approximation otherwise.

Used before a request is sent (rate limits, budget reservations: ``estimate_prompt``)
and after a stream that ended without usage (``estimate_completion``). Providers'
reported usage always wins over these numbers; a ``Usage`` built from them carries
``estimated=True``.

Encodings: ``o200k_base`` for gpt-4o / gpt-4.1 / gpt-4.5 / gpt-5 / o1 / o3 / o4 and as
the estimate for every other provider's models; ``cl100k_base`` for older OpenAI
models (gpt-4, gpt-3.5). Message framing follows OpenAI's cookbook "How to count
tokens with tiktoken" (3 tokens per message, +1 for a ``name``, +3 priming the
reply) and its tool-definition rule; both reproduce the API's ``prompt_tokens`` for
the cookbook's published examples (129/124 and 105/101, gpt-4/gpt-4o).

Images follow OpenAI's published vision rule: ``detail: low`` costs 85 tokens;
``high``/``auto`` (assumed high) cost 85 + 170 per 512 px tile after scaling the image
to fit 2048x2048 and then its short side down to 768. The size is read from the
header of PNG, GIF and JPEG data URLs; otherwise (remote URL, other formats) a
1024x1024 image is assumed: 765 tokens. (This is the gpt-4o rule; gpt-4o-mini and
patch-based models such as gpt-4.1-mini count images differently, so it stays an
estimate there.)

Fallback: ``load()`` reads the BPE files in a worker thread within ``load_timeout``
(tiktoken downloads them when they are not in its cache, with no timeout of its
own). If that fails, every count is ``ceil(UTF-8 bytes / 4)`` (OpenAI's rule of thumb
of ~4 characters per English token; counting bytes keeps CJK text from being
undercounted), ``approximate`` stays True and one warning is logged. Counts are
approximate until ``load()`` has succeeded. The sync methods never touch the
network or the disk.
"""

from __future__ import annotations

import binascii
import functools
import importlib
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
import trio

log = logging.getLogger(__name__)

O200K = "o200k_base"
CL100K = "cl100k_base"
#: Older OpenAI models on cl100k_base, except the o200k_base ones sharing the prefix.
_CL100K_PREFIXES = ("gpt-4", "gpt-3.5", "gpt-35", "text-embedding-ada", "text-embedding-3")
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "chatgpt-4o")

# OpenAI cookbook, "Counting tokens for chat completions API calls".
_PER_MESSAGE = 3
_PER_NAME = 1
_REPLY_PRIMING = 3
#: Not published: framing of one assistant tool call beyond its name and arguments.
_PER_TOOL_CALL = 3
# OpenAI cookbook, "Counting tokens for chat completions with tool calls".
_FUNC_INIT = {O200K: 7, CL100K: 10}
_PROP_INIT = 3
_PROP_KEY = 3
_ENUM_INIT = -3
_ENUM_ITEM = 3
_FUNC_END = 12

# OpenAI vision pricing rule.
_IMAGE_BASE = 85
_IMAGE_TILE = 170
_IMAGE_DEFAULT = _IMAGE_BASE + 4 * _IMAGE_TILE  # 1024x1024 -> 768x768 -> 4 tiles
#: Base64 characters decoded to find an image's size (48 KiB of image header).
_SNIFF_CHARS = 65_536


def encoding_name(model: str) -> str:
    """The tiktoken encoding used to count (or estimate) ``model``'s tokens."""
    name = model.lower().rsplit("/", 1)[-1]
    if name.startswith(_CL100K_PREFIXES) and not name.startswith(_O200K_PREFIXES):
        return CL100K
    return O200K


def approximate_tokens(text: str) -> int:
    """The fallback count: ``ceil(UTF-8 bytes / 4)``."""
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / 4)


class TokenCounter:
    """Counts tokens for any model.

    Encodings load on first use, in a worker thread started by ``run()`` (app
    nursery): o200k_base when the first request is counted, cl100k_base when a legacy
    model (gpt-4, gpt-3.5) first is. Each holds about 45 MB, which an idle gateway
    (and one that never sees legacy models) does not pay. Until an encoding is
    loaded, counts use o200k_base if it is there, else the approximation.
    """

    def __init__(self, *, load_timeout: float = 10.0) -> None:
        self._load_timeout = load_timeout
        self._encodings: dict[str, Any] = {}  # name -> tiktoken CoreBPE
        self._warned = False
        self._wanted: set[str] = set()
        self._wake = trio.Event()
        self._failed = False  # BPE files unavailable: stop asking

    @property
    def approximate(self) -> bool:
        """True while counts use the ``ceil(bytes / 4)`` fallback."""
        return not self._encodings

    def statistics(self) -> dict[str, Any]:
        return {"approximate": self.approximate, "encodings": sorted(self._encodings)}

    async def run(self) -> None:
        """Load each encoding the first time it is asked for (app nursery)."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            wanted, self._wanted = self._wanted - set(self._encodings), set()
            if wanted:
                await self.load(*sorted(wanted))

    async def load(self, *names: str) -> None:
        """Load the BPE files in a worker thread; on any failure keep approximating."""
        names = tuple(n for n in (names or (O200K,)) if n not in self._encodings)
        if not names:
            return
        encodings: dict[str, Any] | None = None
        reason = f"not loaded within {self._load_timeout}s"
        with trio.move_on_after(self._load_timeout):
            try:
                encodings = await trio.to_thread.run_sync(
                    _load_encodings, names, abandon_on_cancel=True
                )
            except Exception as exc:  # no file, no network, bad hash: all mean "approximate"
                reason = repr(exc)
        if encodings is not None:
            self._encodings.update(encodings)
            return
        self._failed = True
        if not self._warned:
            self._warned = True
            log.warning(
                "tiktoken encodings unavailable (%s); token counts are approximate: "
                "ceil(UTF-8 bytes / 4). Set TIKTOKEN_CACHE_DIR to a folder with the BPE files.",
                reason,
            )

    def count_text(self, text: str, model: str) -> int:
        return self._counter(model)(text)

    def estimate_completion(self, parts: Iterable[str], model: str) -> int:
        """Tokens of streamed text (content, reasoning, tool arguments) joined up."""
        return self._counter(model)("".join(parts))

    def estimate_prompt(self, body: Mapping[str, Any], model: str) -> int:
        """``prompt_tokens`` for an OpenAI Chat Completions ``body``, as OpenAI counts it."""
        count = self._counter(model)
        total = 0
        messages = body.get("messages")
        if isinstance(messages, list):
            for message in messages:
                if isinstance(message, Mapping):
                    total += _PER_MESSAGE + _message_tokens(message, count)
            total += _REPLY_PRIMING
        tools = body.get("tools")
        if not tools and isinstance(body.get("functions"), list):  # the legacy spelling
            tools = [{"type": "function", "function": f} for f in body["functions"]]
        if isinstance(tools, list) and tools:
            total += _tools_tokens(tools, count, _FUNC_INIT[encoding_name(model)])
        return total

    def _counter(self, model: str) -> Callable[[str], int]:
        name = encoding_name(model)
        encoding = self._encodings.get(name)
        if encoding is None:
            if name not in self._wanted and not self._failed:  # load it for next time
                self._wanted.add(name)
                self._wake.set()
            encoding = self._encodings.get(O200K)
            if encoding is None:
                return approximate_tokens
        return lambda text: len(encoding.encode_ordinary(text))


def _load_encodings(names: tuple[str, ...]) -> dict[str, Any]:
    """Runs in a worker thread.

    Builds tiktoken's ``CoreBPE`` from its plugin constructors instead of
    ``tiktoken.get_encoding``: the process-wide registry would let a later load
    "succeed" from memory after the files are gone, and ``Encoding`` keeps a Python
    copy of the ranks (about 25 MB) that counting never needs. Loads are memoised per
    cache folder (``TIKTOKEN_CACHE_DIR``): the tables are immutable, and building one
    costs about half a second of CPU, which every app built in one process would
    otherwise pay.
    """
    folder = os.environ.get("TIKTOKEN_CACHE_DIR", "")
    return {name: _load_one(folder, name) for name in names}


@functools.lru_cache(maxsize=8)
def _load_one(cache_dir: str, name: str) -> Any:
    del cache_dir  # part of the memo's key; tiktoken reads the variable itself
    from tiktoken._tiktoken import CoreBPE

    plugin = importlib.import_module("tiktoken_ext.openai_public")
    spec = plugin.ENCODING_CONSTRUCTORS[name]()
    return CoreBPE(spec["mergeable_ranks"], spec["special_tokens"], spec["pat_str"])


# --- messages ----------------------------------------------------------------------------


def _message_tokens(message: Mapping[str, Any], count: Callable[[str], int]) -> int:
    total = 0
    for key, value in message.items():
        if key == "name":
            total += _PER_NAME
        if key == "tool_calls" and isinstance(value, list):
            total += sum(_tool_call_tokens(call, count) for call in value)
        elif key == "function_call" and isinstance(value, Mapping):
            total += _tool_call_tokens({"function": value}, count)
        elif key == "content" and isinstance(value, list):
            total += sum(_part_tokens(part, count) for part in value)
        else:
            total += _value_tokens(value, count)
    return total


def _tool_call_tokens(call: Any, count: Callable[[str], int]) -> int:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping):
        return _value_tokens(call, count)
    return (
        _PER_TOOL_CALL
        + _value_tokens(function.get("name"), count)
        + _value_tokens(function.get("arguments"), count)
    )


def _part_tokens(part: Any, count: Callable[[str], int]) -> int:
    if not isinstance(part, Mapping):
        return _value_tokens(part, count)
    kind = part.get("type")
    if kind == "text":
        return _value_tokens(part.get("text"), count)
    if kind == "refusal":
        return _value_tokens(part.get("refusal"), count)
    if kind == "image_url":
        return image_tokens(part.get("image_url"))
    if kind in ("input_audio", "file"):
        return 0  # priced by the provider in ways a text tokenizer cannot tell
    return _value_tokens(part, count)


def _value_tokens(value: Any, count: Callable[[str], int]) -> int:
    if isinstance(value, str):
        return count(value)
    if value is None or isinstance(value, bool | int | float):
        return 0
    try:
        return count(orjson.dumps(value).decode())
    except TypeError:  # not JSON-serialisable: nothing a client could have sent
        return 0


def _tools_tokens(tools: list[Any], count: Callable[[str], int], func_init: int) -> int:
    """The cookbook's rule for function definitions.

    It covers name, description and flat properties (type, description, enum). Other
    schema keywords (nested objects, ``items``, ``anyOf``...) are counted as their
    JSON, and non-function tools as theirs: an estimate, not a published rule.
    """
    total = _FUNC_END
    for tool in tools:
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping):
            total += _value_tokens(tool, count)
            continue
        description = str(function.get("description") or "").removesuffix(".")
        total += func_init + count(f"{function.get('name', '')}:{description}")
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
        if isinstance(properties, Mapping) and properties:
            total += _PROP_INIT
            for key, spec in properties.items():
                total += _PROP_KEY + _property_tokens(str(key), spec, count)
    return total


def _property_tokens(key: str, spec: Any, count: Callable[[str], int]) -> int:
    if not isinstance(spec, Mapping):
        return count(key) + _value_tokens(spec, count)
    total = 0
    enum = spec.get("enum")
    if isinstance(enum, list):
        total += _ENUM_INIT + sum(_ENUM_ITEM + count(str(item)) for item in enum)
    kind = spec.get("type", "")
    if isinstance(kind, list):
        kind = " | ".join(str(item) for item in kind)
    description = str(spec.get("description") or "").removesuffix(".")
    total += count(f"{key}:{kind}:{description}")
    rest = {name: v for name, v in spec.items() if name not in ("type", "description", "enum")}
    return total + (_value_tokens(rest, count) if rest else 0)


# --- images ------------------------------------------------------------------------------


def image_tokens(spec: Any) -> int:
    """Tokens for one ``image_url`` part (its ``image_url`` value: object or bare URL)."""
    if isinstance(spec, str):
        spec = {"url": spec}
    if not isinstance(spec, Mapping):
        return _IMAGE_DEFAULT
    if spec.get("detail") == "low":
        return _IMAGE_BASE
    url = spec.get("url")
    size = image_size(url) if isinstance(url, str) else None
    return high_detail_tokens(*size) if size else _IMAGE_DEFAULT


def high_detail_tokens(width: int, height: int) -> int:
    """OpenAI's rule: fit in 2048x2048, short side down to 768, 170 per 512 px tile + 85."""
    if width <= 0 or height <= 0:
        return _IMAGE_DEFAULT
    scale = min(1.0, 2048 / max(width, height))
    scale *= min(1.0, 768 / (min(width, height) * scale))
    tiles = math.ceil(round(width * scale) / 512) * math.ceil(round(height * scale) / 512)
    return _IMAGE_BASE + _IMAGE_TILE * tiles


def image_size(url: str) -> tuple[int, int] | None:
    """``(width, height)`` of a base64 PNG, GIF or JPEG data URL; ``None`` otherwise."""
    comma = url.find(",")
    if not url.startswith("data:") or comma < 0 or not url[:comma].endswith(";base64"):
        return None
    head = url[comma + 1 : comma + 1 + _SNIFF_CHARS]
    try:
        data = binascii.a2b_base64(head[: len(head) // 4 * 4])
    except binascii.Error:
        return None
    return _png_size(data) or _gif_size(data) or _jpeg_size(data)


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 24:
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _gif_size(data: bytes) -> tuple[int, int] | None:
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 10:
        return None
    return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG segments up to the first start-of-frame (SOFn) marker."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            return int.from_bytes(data[i + 7 : i + 9], "big"), height
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None
