"""Step 8 of the request path: the one batching writer of request rows.

Requests hand a finished row to ``submit_nowait()``, which never blocks and never
touches the disk: it puts the row on a bounded trio memory channel, or, when that
is full, drops it and counts the drop (``statistics().dropped``, also on
/metrics and in the log). ``run()`` is the single consumer, started in the app
nursery: it takes whatever is queued (up to ``batch_size``), writes it in one
transaction in a worker thread behind a ``CapacityLimiter(1)``, and retries a
failed batch with backoff (locked or read-only database) while new rows keep
queueing in bounded memory.

Shutdown: ``close()`` ends the intake; ``run()`` then writes everything still
queued and returns. ``wait_drained()`` waits until every submitted row is on disk.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

log = logging.getLogger("gateway.logwriter")

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class LogWriterStatistics:
    queued: int
    written: int
    dropped: int
    failed_batches: int
    batches: int


class LogWriter:
    def __init__(
        self,
        write_batch: Callable[[list[Row]], None],
        *,
        queue_size: int,
        batch_size: int,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
    ) -> None:
        self._write_batch = write_batch
        self._send, self._receive = trio.open_memory_channel[Row](queue_size)
        self._batch_size = batch_size
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._limiter = trio.CapacityLimiter(1)
        self._submitted = 0
        self._written = 0
        self._dropped = 0
        self._failed = 0
        self._batches = 0
        self._progress = trio.Event()
        self._closed = False
        #: Called with each written batch (rollups, live monitor); must not block.
        self.listeners: list[Callable[[Sequence[Row]], None]] = []

    # -- producers (the request path) ----------------------------------------------

    def submit_nowait(self, row: Row) -> bool:
        """Queue a row; never blocks. Returns False (and counts a drop) when full."""
        if self._closed:
            self._dropped += 1
            log.error("log writer closed: request row dropped (%d so far)", self._dropped)
            return False
        try:
            self._send.send_nowait(row)
        except trio.WouldBlock:
            self._dropped += 1
            if self._dropped == 1 or math.log2(self._dropped).is_integer():
                log.error("log queue full: %d request rows dropped so far", self._dropped)
            return False
        self._submitted += 1
        return True

    def statistics(self) -> LogWriterStatistics:
        return LogWriterStatistics(
            queued=self._send.statistics().current_buffer_used,
            written=self._written,
            dropped=self._dropped,
            failed_batches=self._failed,
            batches=self._batches,
        )

    # -- the consumer ----------------------------------------------------------------

    async def run(self) -> None:
        """Consume until ``close()``; then write what is left and return."""
        async with self._receive:
            while True:
                try:
                    first = await self._receive.receive()
                except trio.EndOfChannel:
                    return
                batch = [first]
                while len(batch) < self._batch_size:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._write_with_retry(batch)

    async def _write_with_retry(self, batch: list[Row]) -> None:
        delay = self._retry_initial
        while True:
            try:
                await trio.to_thread.run_sync(self._write_batch, batch, limiter=self._limiter)
            except Exception as exc:  # sqlite errors: locked, read-only, disk full, ...
                self._failed += 1
                log.warning(
                    "log write of %d rows failed (%s); retrying in %.2fs",
                    len(batch),
                    exc.__class__.__name__,
                    delay,
                )
                await trio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            break
        self._written += len(batch)
        self._batches += 1
        for listener in self.listeners:
            listener(batch)
        self._progress.set()
        self._progress = trio.Event()

    def close(self) -> None:
        """Stop taking rows; ``run()`` finishes writing what is queued, then returns."""
        if not self._closed:
            self._closed = True
            self._send.close()

    async def wait_drained(self) -> None:
        """Wait until every row submitted so far has been written."""
        target = self._submitted
        while self._written < target:
            await self._progress.wait()
