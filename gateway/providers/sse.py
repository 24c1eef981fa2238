"""Incremental Server-Sent Events decoder (pure; shared by the relay for every provider).

Handles ``\\n``, ``\\r\\n`` and ``\\r`` line endings (Gemini frames with CRLF),
comment lines (DeepSeek's ``: keep-alive``), multi-line ``data`` fields, and
events split across any number of network reads. Only ``data`` matters to
chat streams; ``event``/``id``/``retry`` fields are ignored.
"""

from __future__ import annotations


class SSEDecoder:
    """Feed raw bytes, get back the ``data`` payload of each complete event."""

    __slots__ = ("_buf", "_data")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            # A lone trailing \r may be the first half of \r\n: keep it for later.
            if buf.endswith(b"\r"):
                self._buf = b"\r"
                buf = buf[:-1]
            else:
                self._buf = b""
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            lines = buf.split(b"\n")
            self._buf = lines.pop() + self._buf
        else:
            lines = buf.split(b"\n")
            self._buf = lines.pop()
        out: list[bytes] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    out.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data.clear()
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            # comments (":...") and other fields are ignored
        return out

    def close(self) -> list[bytes]:
        """End of input: an event not followed by a blank line still counts."""
        out = self.feed(b"\n\n") if (self._buf or self._data) else []
        self._buf = b""
        return out
