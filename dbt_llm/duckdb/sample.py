"""The rows a recheck asks again: a uniform sample of the distinct cached rows a call read."""

from __future__ import annotations

import heapq
import threading

from ..functions.tasks import sha256_hex


class Sample:
    """A uniform sample of up to `size` distinct cached rows (a bottom-k sketch: each key's rank is a hash
    of the key and a seed, so a key offered twice, by two chunks, is one row)."""

    def __init__(self, size: int, seed: str) -> None:
        self._size = size
        self._seed = seed
        self._lock = threading.Lock()
        self._heap: list[tuple[int, str]] = []  # (-rank, key): the largest rank kept is popped first
        self._rows: dict[str, tuple[str, str]] = {}  # key -> (text, cached answer)

    def offer(self, key: str, text: str, result: str) -> None:
        rank = int(sha256_hex(self._seed + key)[:15], 16)
        with self._lock:
            if key in self._rows:
                return
            if len(self._heap) < self._size:
                heapq.heappush(self._heap, (-rank, key))
            elif rank < -self._heap[0][0]:
                _, dropped = heapq.heapreplace(self._heap, (-rank, key))
                del self._rows[dropped]
            else:
                return
            self._rows[key] = (text, result)

    def take(self) -> dict[str, tuple[str, str]]:
        """The sample, emptied: a call is rechecked once."""
        with self._lock:
            rows, self._rows, self._heap = self._rows, {}, []
            return rows
