"""Process logging: human-readable lines by default, one JSON object per line on request.

Request lines come from the ``gateway.access`` logger with the ``RequestRecord`` in
``extra``; the JSON formatter turns it into fields. Nothing here ever formats a
key, a prompt or a password: records carry none.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson

_FIELDS = (
    "request_id",
    "client_name",
    "client_ip",
    "provider",
    "model_requested",
    "model_answered",
    "status",
    "error_type",
    "ttft_ms",
    "cost_usd",
    "attempts",
    "stream",
)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        req = getattr(record, "request", None)
        if req is not None:
            for name in _FIELDS:
                out[name] = getattr(req, name, None)
            latency = getattr(record, "latency_ms", None)
            if latency is not None:
                out["latency_ms"] = round(latency, 1)
            usage = req.usage
            if usage is not None:
                out["prompt_tokens"] = usage.prompt_tokens
                out["completion_tokens"] = usage.completion_tokens
                out["tokens_estimated"] = usage.estimated
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def make_formatter(fmt: str) -> logging.Formatter:
    """The formatter for ``logging.format``: ``"json"`` or ``"text"``."""
    if fmt == "json":
        return JSONFormatter()
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO; keep provider URLs out of the request log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
