"""A thread that waits on every worker's outbox pipe and process sentinel at once.

Reading pipes blocks, so it happens here rather than on the event loop; each message and
each process exit is handed to the loop with `call_soon_threadsafe`. A process's exit is
reported only after everything it wrote has been read, so a result sent just before a
crash is never lost, and an exit is noticed as soon as it happens (no polling).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K")


class PipeReader(threading.Thread, Generic[K]):
    """Calls `on_message(key, msg)` and, once, `on_exit(key)` on `loop` for each watched
    process. `key` is whatever the owner uses to tell processes apart."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 on_message: Callable[[K, Any], None], on_exit: Callable[[K], None]) -> None:
        super().__init__(name="stylizer-pool-reader", daemon=True)
        self._loop = loop
        self._on_message = on_message
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._conns: dict[Connection, K] = {}
        self._sentinels: dict[int, tuple[K, Connection]] = {}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)  # a full pipe already means "wake up"
        self._stopping = False
        self._closed = False

    def watch(self, key: K, conn: Connection, sentinel: int) -> None:
        """Starts reading `conn` and waiting for `sentinel`; the reader closes `conn`."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the pipe reader has stopped")
            self._conns[conn] = key
            self._sentinels[sentinel] = (key, conn)
        self._wake()

    def stop(self) -> None:
        """Asks `run` to return; safe from any thread."""
        self._stopping = True
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._closed:  # the descriptor's number may belong to another file by now
                return
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:  # full: a wake-up is pending anyway
                pass

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._stopping = True

    def _read_one(self, conn: Connection, key: K) -> bool:
        """Reads one message; False (and the pipe closed) at end of file."""
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            pass
        except Exception:  # a message cut short by a kill can fail to unpickle
            log.warning("unreadable message from a worker", exc_info=True)
        else:
            self._post(self._on_message, key, msg)
            return True
        with self._lock:
            self._conns.pop(conn, None)
        conn.close()
        return False

    def run(self) -> None:
        """The reader thread's body: waits on every connection and process sentinel until
        `stop`, then closes the connections it still holds."""
        try:
            self._loop_until_stopped()
        finally:
            with self._lock:
                conns = list(self._conns)
                self._conns.clear()
                self._sentinels.clear()
            for conn in conns:
                conn.close()
            with self._lock:
                self._closed = True
                os.close(self._wake_r)
                os.close(self._wake_w)

    def _loop_until_stopped(self) -> None:
        while not self._stopping:
            with self._lock:
                conns = dict(self._conns)
                sentinels = dict(self._sentinels)
            ready = wait([self._wake_r, *conns, *sentinels])
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            for r in ready:
                if isinstance(r, Connection) and r in conns:
                    self._read_one(r, conns[r])
            for r in ready:
                if isinstance(r, int) and r in sentinels:
                    key, conn = sentinels[r]
                    # Everything the process wrote before it ended is read first.
                    while conn in self._conns and conn.poll() and self._read_one(conn, key):
                        pass
                    with self._lock:
                        self._sentinels.pop(r, None)
                        still_open = self._conns.pop(conn, None) is not None
                    if still_open:
                        conn.close()
                    self._post(self._on_exit, key)
