"""One-slot queues between the live stages: the newest item wins.

A stage that is slower than the one feeding it never builds a backlog: an item
that was not taken before the next one arrives is replaced (and counted as
dropped), so latency stays bounded by one item per stage. A producer that can wait
(`wait_taken`) starts its next item only once the last one was taken, so no work
is spent on items that would be replaced.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

Item = TypeVar("Item")


class NewestSlot(Generic[Item]):
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._item: Item | None = None
        self._full = False
        self._closed = False
        self.dropped = 0  # items replaced before anyone took them

    def put(self, item: Item) -> None:
        with self._changed:
            if self._full:
                self.dropped += 1
            self._item, self._full = item, True
            self._changed.notify_all()

    def get(self, timeout: float) -> Item | None:
        """The newest item, waiting up to `timeout` seconds; None when there is none or the slot is closed."""
        with self._changed:
            self._changed.wait_for(lambda: self._full or self._closed, timeout)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            self._changed.notify_all()  # a producer may be waiting for the slot to empty
            return item

    def wait_taken(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds until the slot is empty (or closed); True if it is."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._full or self._closed, timeout)

    @property
    def full(self) -> bool:
        return self._full

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
