"""Progress a person can read: a tqdm bar on a terminal; in a log file, a plain line now and then.

Where stderr is not a terminal (a cluster job's log, ``2> file``, CI), a bar would write a carriage
return per update; :class:`Progress` writes one line every few seconds or tenth of the work instead.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger(__name__)

LINE_SECONDS = 10.0  # a plain progress line at most this often...
LINE_FRACTION = 0.1  # ...or each time this share of the work is done
MIN_TOTAL = 64  # below this many items no progress is shown: it is over before anyone reads it


class Progress:
    """``update(n)`` or ``progress(done, total)`` (the callback that doctor, predict and evaluate take)."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "img", min_total: int = MIN_TOTAL):
        self.desc, self.unit, self.min_total = desc, unit, min_total
        self.total, self.done = total, 0
        self._bar: Any = None
        self._started = self._last_time = time.perf_counter()
        self._last_done = 0
        self._closed = False

    def _shown(self) -> bool:
        return self.total is not None and self.total >= self.min_total

    def __call__(self, done: int, total: int) -> None:
        self.total = total
        self._move_to(done)

    def update(self, count: int = 1) -> None:
        self._move_to(self.done + count)

    def _move_to(self, done: int) -> None:
        self.done = done
        if self._closed or not self._shown():
            return
        if sys.stderr.isatty():
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=self.total, desc=self.desc, unit=self.unit, file=sys.stderr, leave=False)
            self._bar.n = done
            self._bar.refresh()
        else:
            now = time.perf_counter()
            if (now - self._last_time >= LINE_SECONDS or done - self._last_done >= LINE_FRACTION * self.total
                    or done >= self.total):
                self._line(now)
        if done >= self.total:
            self.close()

    def _line(self, now: float) -> None:
        elapsed = now - self._started
        rate = f", {self.done / elapsed:.0f} {self.unit}/s" if elapsed > 0 and self.done else ""
        log.info("%s: %d/%d %s (%.0f%%%s)", self.desc, self.done, self.total, self.unit,
                 100 * self.done / max(1, self.total), rate)
        self._last_time, self._last_done = now, self.done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._closed = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
