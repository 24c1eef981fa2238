"""HTTP/1.1 on the wire, without I/O: request bytes, response heads, body framing
and chunked decoding, for ``http11.ProviderTransport``.

Errors are httpx's (``RemoteProtocolError``, ``LocalProtocolError``), carrying the
``httpx.Request`` when there is one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import httpx

#: The largest chunk-size or trailer line accepted in a chunked body.
MAX_LINE = 8 * 1024


#: Headers whose framing this module writes itself: the body is always sent whole,
#: with its length (a streamed httpx body arrives marked ``Transfer-Encoding: chunked``).
_FRAMING = (b"content-length", b"transfer-encoding")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
_BAD_IN_HEADER = re.compile(rb"[\r\n\x00]")
_BAD_IN_TEXT = re.compile(r"[\r\n\x00]")


def serialize(request: httpx.Request, body: bytes) -> bytes:
    url = request.url
    out = [request.method.encode("ascii"), b" ", url.raw_path, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        if _BAD_IN_HEADER.search(name) or _BAD_IN_HEADER.search(value):
            raise httpx.LocalProtocolError("header contains a line break", request=request)
        if name.lower() not in _FRAMING:
            out += (name, b": ", value, b"\r\n")
    if body or request.method not in ("GET", "HEAD"):
        out += (b"Content-Length: ", str(len(body)).encode(), b"\r\n")
    out += (b"\r\n", body)
    return b"".join(out)


def serialize_parts(method: str, start: str, headers: Mapping[str, str], body: bytes) -> bytes:
    """The relay's request: ``start`` is "<target> HTTP/1.1\\r\\nHost: ...\\r\\n";
    the same header rules as ``serialize``, and the length written here."""
    head = [method, " ", start]
    for name, value in headers.items():
        if _BAD_IN_TEXT.search(name) or _BAD_IN_TEXT.search(value):
            raise httpx.LocalProtocolError("header contains a line break")
        head += (name, ": ", value, "\r\n")
    head += ("Content-Length: ", str(len(body)), "\r\n\r\n")
    try:
        return "".join(head).encode("latin-1") + body
    except UnicodeEncodeError as exc:
        raise httpx.LocalProtocolError("header is not latin-1 text") from exc


def parse_head(
    head: bytes, request: httpx.Request | None
) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    """(status, reason, http version, headers) from the bytes before the blank line."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    version = parts[0]
    if len(parts) < 2 or version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise httpx.RemoteProtocolError("provider sent an invalid status line", request=request)
    code = parts[1]
    if len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError("provider sent an invalid status code", request=request)
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if (
            not colon
            or not name
            or name != name.strip()
            or line[:1] in (b" ", b"\t")
            or _BAD_IN_HEADER.search(line)
        ):
            raise httpx.RemoteProtocolError("provider sent an invalid header line", request=request)
        headers.append((name, value.strip(b" \t")))
    return int(code), parts[2] if len(parts) > 2 else b"", version, headers


class Framing:
    """How the body ends: ``length`` bytes, ``chunked``, or at EOF (``length`` None)."""

    __slots__ = ("chunked", "keep_alive", "length")

    def __init__(self, chunked: bool, length: int | None, keep_alive: bool) -> None:
        self.chunked = chunked
        self.length = length
        self.keep_alive = keep_alive


def framing(
    method: str,
    close: bool,
    status: int,
    version: bytes,
    headers: list[tuple[bytes, bytes]],
    request: httpx.Request | None,
) -> Framing:
    """Framing of the response to ``method`` (``close``: we asked to close)."""
    te: bytes | None = None
    lengths: set[bytes] = set()
    connection = b""
    for name, value in headers:
        lname = name.lower()
        if lname == b"transfer-encoding":
            te = value.lower() if te is None else te + b"," + value.lower()
        elif lname == b"content-length":
            lengths.update(v.strip() for v in value.split(b","))
        elif lname == b"connection":
            connection += b"," + value.lower()
    tokens = {t.strip() for t in connection.split(b",")}
    keep_alive = (
        not close and b"close" not in tokens and (version == b"HTTP/1.1" or b"keep-alive" in tokens)
    )
    if method == "HEAD" or status in (204, 304):
        return Framing(False, 0, keep_alive)
    if te is not None:
        # RFC 9112 6.1/6.3: chunked is the only coding we can take off; a message that
        # also has a length, or comes from HTTP/1.0, must not be followed by another.
        if te.strip() != b"chunked":
            raise httpx.RemoteProtocolError(
                "provider sent an unsupported Transfer-Encoding", request=request
            )
        return Framing(True, None, keep_alive and not lengths and version == b"HTTP/1.1")
    if lengths:
        (value,) = lengths if len(lengths) == 1 else (b"x",)
        if not value.isdigit() or len(value) > 18:
            raise httpx.RemoteProtocolError(
                "provider sent an invalid Content-Length", request=request
            )
        return Framing(False, int(value), keep_alive)
    return Framing(False, None, False)


class ChunkedDecoder:
    """Incremental chunked-body decoder over a connection's buffer."""

    __slots__ = ("done", "left", "state")

    SIZE, DATA, DATA_END, TRAILER = range(4)

    def __init__(self) -> None:
        self.state = self.SIZE
        self.left = 0
        self.done = False

    def feed(self, buf: bytearray, request: httpx.Request | None) -> list[bytes]:
        """Consume what ``buf`` holds; return the body bytes decoded from it."""
        out: list[bytes] = []
        while buf and not self.done:
            if self.state == self.DATA:
                take = min(self.left, len(buf))
                out.append(bytes(buf[:take]))
                del buf[:take]
                self.left -= take
                if not self.left:
                    self.state = self.DATA_END
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > MAX_LINE:
                    raise httpx.RemoteProtocolError("chunked body line too long", request=request)
                break
            line = bytes(buf[:end])
            del buf[: end + 2]
            if self.state == self.SIZE:
                size = line.split(b";", 1)[0].rstrip(b" \t")  # BWS only before ";"
                if not _CHUNK_SIZE.fullmatch(size):  # int() would take "0x5", "-0", "5_0"
                    raise httpx.RemoteProtocolError(
                        "provider sent an invalid chunk size", request=request
                    )
                self.left = int(size, 16)
                self.state = self.DATA if self.left else self.TRAILER
            elif self.state == self.DATA_END:
                if line:
                    raise httpx.RemoteProtocolError("chunk data overran its size", request=request)
                self.state = self.SIZE
            elif not line:  # TRAILER: a blank line ends the body
                self.done = True
        return out
