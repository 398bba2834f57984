"""Terminal keys for the live controls, when stdin is a terminal."""

from __future__ import annotations

import os
import select
import sys
import threading

from fakelab.live.preview import KEYS


class TerminalKeys:
    """Reads single key presses (no Enter needed) and turns them into session commands."""

    def __init__(self, session, stream=None):
        self.session = session
        self.stream = stream or sys.stdin
        self._stop = threading.Event()
        self._saved = None
        self._thread = threading.Thread(target=self._read, name="live-keys", daemon=True)

    @staticmethod
    def available(stream=None) -> bool:
        stream = stream or sys.stdin
        try:
            return stream.isatty() and os.name == "posix"
        except (AttributeError, ValueError):
            return False

    def start(self) -> None:
        import termios
        import tty

        fd = self.stream.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._thread.start()

    def _read(self) -> None:
        fd = self.stream.fileno()
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            key = os.read(fd, 1).decode(errors="ignore").lower()
            action = KEYS.get(key)
            if action is not None:
                self.session.command(action)

    def close(self) -> None:
        import termios

        self._stop.set()
        self._thread.join(0.5)
        if self._saved is not None:
            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None
