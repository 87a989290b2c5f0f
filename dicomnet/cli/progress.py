"""Progress display for long ``dicomnet`` commands (store, bench, get).

A progress bar appears only when stderr is a terminal and neither ``-q`` nor
``--json`` was given: a pipe or a log file never receives carriage returns.
With the optional ``tqdm`` package (``pip install dicomnet[cli]``) the bar is
tqdm's; without it a plain single line is redrawn at most five times a
second. Either way the numbers are the same: instances done/total, MB sent,
MB/s and the estimated time left.
"""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Progress", "format_rate", "format_duration"]

_MB = 1_000_000


def format_duration(seconds: float) -> str:
    """``seconds`` as ``H:MM:SS`` or ``M:SS``."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_rate(nbytes: int, seconds: float) -> str:
    """Throughput in MB/s (decimal megabytes) with one decimal."""
    return f"{(nbytes / _MB) / seconds:.1f} MB/s" if seconds > 0 else "- MB/s"


class Progress:
    """Counts instances and bytes; draws a bar on a terminal only.

    ``total`` and ``total_bytes`` (when known) give the percentage and the
    ETA. ``enabled`` None means "if ``stream`` is a terminal".
    """

    def __init__(self, total: int | None, total_bytes: int | None = None, *, label: str = "",
                 enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self.total = total
        self.total_bytes = total_bytes
        self.label = label
        self.count = 0
        self.failed = 0
        self.nbytes = 0
        self.start = time.perf_counter()
        self._stream = stream or sys.stderr
        if enabled is None:
            enabled = bool(getattr(self._stream, "isatty", lambda: False)())
        self.enabled = enabled
        self._bar: Any = None
        self._last_draw = 0.0
        self._width = 0
        if enabled:
            try:
                from tqdm import tqdm  # optional: dicomnet[cli]
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=label or None, unit="inst", file=self._stream,
                                 dynamic_ncols=True, leave=False)

    @property
    def elapsed(self) -> float:
        """Seconds since the progress started."""
        return time.perf_counter() - self.start

    def update(self, nbytes: int = 0, *, failed: bool = False) -> None:
        """One more instance done (``nbytes`` of data), successful or not."""
        self.count += 1
        self.nbytes += nbytes
        if failed:
            self.failed += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(self._numbers(with_count=False), refresh=False)
            self._bar.update(1)
            return
        now = time.perf_counter()
        if now - self._last_draw >= 0.2 or (self.total is not None and self.count >= self.total):
            self._last_draw = now
            text = f"{self.label}: {self._numbers(with_count=True)}" if self.label else self._numbers(True)
            pad = max(0, self._width - len(text))
            self._width = len(text)
            self._stream.write("\r" + text + " " * pad)
            self._stream.flush()

    def _numbers(self, with_count: bool) -> str:
        elapsed = self.elapsed
        parts = []
        if with_count:
            parts.append(f"{self.count}/{self.total}" if self.total is not None else str(self.count))
        parts.append(f"{self.nbytes / _MB:.1f} MB")
        parts.append(format_rate(self.nbytes, elapsed))
        if self.failed:
            parts.append(f"{self.failed} failed")
        eta = self.eta()
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        return ", ".join(parts)

    def eta(self) -> float | None:
        """Estimated seconds left (by bytes when their total is known, else by count)."""
        elapsed = self.elapsed
        if self.total_bytes and self.nbytes:
            return elapsed * (self.total_bytes - self.nbytes) / self.nbytes
        if self.total and self.count:
            return elapsed * (self.total - self.count) / self.count
        return None

    def close(self) -> None:
        """Remove the bar (the summary is printed by the command)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
