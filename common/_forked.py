"""Compute one value in a forked child process while the parent goes on with other work.

A fork shares the parent's memory (a 270 MB bundle is not copied or pickled); only the result
crosses back, pickled through a pipe. The child is an optimisation and never the only way to a
result: if it fails in any way, :meth:`Forked.result` says so by returning ``None`` and the
caller computes the value itself.
"""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

CAN_FORK = hasattr(os, "fork")


class Forked(Generic[T]):
    """``Forked(fn)`` starts ``fn()`` in a child; ``result()`` waits for it. Use as a context
    manager so a child whose result is never asked for is stopped."""

    def __init__(self, fn: Callable[[], T]) -> None:
        read_end, write_end = os.pipe()
        self._pid = os.fork()
        if self._pid == 0:
            # The child: compute, send, and leave without running any of the parent's exit code.
            code = 1
            try:
                os.close(read_end)
                with os.fdopen(write_end, "wb") as pipe:
                    pickle.dump(fn(), pipe, protocol=pickle.HIGHEST_PROTOCOL)
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        self._pipe = os.fdopen(read_end, "rb")
        self._done = False

    def result(self) -> T | None:
        """The child's value, or None if it failed (the caller then does the work itself)."""
        try:
            value: T = pickle.load(self._pipe)
        except Exception:  # the child died or raised before sending a whole value
            return None
        finally:
            self._reap()
        return value

    def _reap(self) -> None:
        if not self._done:
            self._done = True
            self._pipe.close()
            os.waitpid(self._pid, 0)

    def __enter__(self) -> Forked[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            os.kill(self._pid, signal.SIGKILL)
            self._reap()
