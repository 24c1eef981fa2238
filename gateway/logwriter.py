"""Step 8 of the request path: the one batching writer of request rows.

Requests hand a finished row to ``submit_nowait()``, which never blocks and never
touches the disk: it puts the row on a bounded trio memory channel, or, when that
is full, drops it and counts the drop (``statistics().dropped``, also on
/metrics and in the log). ``run()`` is the single consumer, started in the app
nursery: it takes whatever is queued (up to ``batch_size``), writes it in one
transaction in a worker thread behind a ``CapacityLimiter(1)``, and retries a
batch that failed for a passing reason (``OperationalError``: locked, busy or
read-only database, disk full) with backoff while new rows keep queueing in
bounded memory. A batch that fails for any other reason (a row the database
refuses) is written again row by row, and only the rows that still fail are
dropped and counted, so one bad row can never stall the writer or shutdown.

Shutdown: ``close()`` ends the intake; ``run()`` then writes everything still
queued and returns. ``wait_drained()`` waits until every submitted row is on disk.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import peewee
import trio

log = logging.getLogger("gateway.logwriter")

Row = tuple[Any, ...]

#: Failures worth retrying: the same batch may well succeed later.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    sqlite3.OperationalError,
    peewee.OperationalError,
    OSError,
)


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
        flush_interval: float = 0.0,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
    ) -> None:
        self._write_batch = write_batch
        self._flush_interval = flush_interval
        self._send, self._receive = trio.open_memory_channel[Row](queue_size)
        self._batch_size = batch_size
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._limiter = trio.CapacityLimiter(1)
        self._submitted = 0
        self._written = 0
        self._discarded = 0  # queued rows the database refused
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
        except trio.BrokenResourceError:  # run() was cancelled: nobody will write it
            self._dropped += 1
            log.error("log writer stopped: request row dropped (%d so far)", self._dropped)
            return False
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
                if self._flush_interval > 0:
                    # Gather what arrives within the flush interval: one transaction for
                    # many rows costs about what one row costs (commit, rollup upserts).
                    with trio.move_on_after(self._flush_interval):
                        while len(batch) < self._batch_size:
                            try:
                                batch.append(await self._receive.receive())
                            except trio.EndOfChannel:
                                break
                await self._write_with_retry(batch)

    async def _write_with_retry(self, batch: list[Row]) -> None:
        try:
            await self._write_retrying(batch)
        except Exception as exc:
            if len(batch) == 1:
                self._discard(batch, exc)
                return
            log.warning(
                "log write of %d rows failed (%s: %s); writing them one by one",
                len(batch),
                exc.__class__.__name__,
                exc,
            )
            for row in batch:
                try:
                    await self._write_retrying([row])
                except Exception as row_exc:
                    self._discard([row], row_exc)
                else:
                    self._done([row])
            return
        self._done(batch)

    async def _write_retrying(self, batch: list[Row]) -> None:
        """Write ``batch``, retrying transient failures; raise any other failure."""
        delay = self._retry_initial
        while True:
            try:
                await trio.to_thread.run_sync(self._write_batch, batch, limiter=self._limiter)
                return
            except TRANSIENT_ERRORS as exc:
                self._failed += 1
                log.warning(
                    "log write of %d rows failed (%s: %s); retrying in %.2fs",
                    len(batch),
                    exc.__class__.__name__,
                    exc,
                    delay,
                )
            except Exception:
                self._failed += 1
                raise
            await trio.sleep(delay)
            delay = min(delay * 2, self._retry_max)

    def _done(self, batch: list[Row]) -> None:
        self._written += len(batch)
        self._batches += 1
        for listener in self.listeners:
            try:
                listener(batch)
            except Exception:
                log.exception("log writer listener %r failed", listener)
        self._notify()

    def _discard(self, rows: list[Row], exc: Exception) -> None:
        self._discarded += len(rows)
        self._dropped += len(rows)
        log.error(
            "request row %s dropped: the database refused it (%s: %s)",
            rows[0][0] if rows and rows[0] else "?",
            exc.__class__.__name__,
            exc,
        )
        self._notify()

    def _notify(self) -> None:
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
        while self._written + self._discarded < target:
            await self._progress.wait()
