"""The one renderer of API errors: ``GatewayError`` -> OpenAI's error envelope."""

from __future__ import annotations

import orjson

from ..errors import GatewayError


def error_body(exc: GatewayError) -> bytes:
    return orjson.dumps(exc.envelope())


def error_headers(exc: GatewayError, request_id: str) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json"), (b"x-request-id", request_id.encode())]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    return headers
