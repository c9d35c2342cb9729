"""Peak resident memory of the running benchmark, sampled in a background thread."""

from __future__ import annotations

import threading
import time

import psutil


class PeakRss:
    """Samples this process's resident memory in a thread; ``.peak`` in bytes."""

    def __init__(self, interval: float = 0.05) -> None:
        """Sample every ``interval`` seconds while the context is open."""
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, proc.memory_info().rss)
            time.sleep(interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
