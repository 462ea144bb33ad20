"""A stdout for the CLI that survives its reader going away (``concurdeploy push … | head``)."""

from __future__ import annotations

import os

__all__ = ["PipeSafe"]


class PipeSafe:
    """stdout that, once its reader has gone (``concurdeploy push … | head``), drops further
    output instead of raising: the run goes on, reports are written, the exit code holds."""

    def __init__(self, stream):
        self._stream, self._closed = stream, False

    def write(self, text):
        if not self._closed:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._closed = True
                try:
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, self._stream.fileno())  # so the interpreter's exit flush is quiet
                except OSError:
                    pass
        return len(text)

    def flush(self):
        if not self._closed:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._closed = True

    def __getattr__(self, name):
        return getattr(self._stream, name)
