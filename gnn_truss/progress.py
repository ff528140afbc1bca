"""Progress bars for long work (thin wrapper over :mod:`tqdm`).

On a terminal the bar redraws in place; when the stream is not a terminal (a log file, a CI
job, ``nohup``) every redraw would be a new line, so the bar then updates at most every
``NON_TTY_INTERVAL`` seconds (plus the first and the last state).
"""
from __future__ import annotations

import sys

__all__ = ["progress_bar", "NON_TTY_INTERVAL"]

#: seconds between updates of a bar whose stream is not a terminal
NON_TTY_INTERVAL = 30.0


def progress_bar(**kwargs):
    """A :class:`tqdm.auto.tqdm` bar; ``kwargs`` as tqdm's (``total``, ``desc``, ``unit``,
    ``file`` (default ``sys.stderr``), ...). ``mininterval`` defaults to
    :data:`NON_TTY_INTERVAL` when the stream is not a terminal."""
    from tqdm.auto import tqdm
    stream = kwargs.get("file") or sys.stderr
    isatty = getattr(stream, "isatty", None)
    if not (callable(isatty) and isatty()):
        kwargs.setdefault("mininterval", NON_TTY_INTERVAL)
    return tqdm(**kwargs)
