"""Error types with messages that name the problem and the fix, and how an uncaught one reaches the user."""

from __future__ import annotations

import os
import sys


class VessaError(Exception):
    """Base class of the errors VESSA raises on bad input."""


class DataError(VessaError, ValueError):
    """A data set, image or label cannot be used as given."""


class CheckpointError(VessaError, FileNotFoundError):
    """A checkpoint or pretrained-weight file is missing or does not fit the model."""


def error_chain(err: BaseException) -> list[BaseException]:
    """``err`` and the exceptions it was raised from, outermost first (MONAI wraps a failing config expression in its own)."""
    chain = [err]
    while (inner := err.__cause__ or (None if err.__suppress_context__ else err.__context__)) is not None and inner not in chain:
        chain.append(inner)
        err = inner
    return chain


def _report_uncaught(previous, exc_type, exc, tb) -> None:
    """A :class:`VessaError` in the chain ends the command with its own message as the one line printed
    (``VESSA_TRACEBACK=1`` shows the tracebacks too); any other error prints its tracebacks and then the
    innermost error's message, so the last line says what went wrong rather than which config expression failed."""
    chain = error_chain(exc)
    ours = next((e for e in chain if isinstance(e, VessaError)), None)
    if ours is not None and not os.environ.get("VESSA_TRACEBACK"):
        print(f"{type(ours).__name__}: {ours}", file=sys.stderr)
        return
    previous(exc_type, exc, tb)
    last = ours or chain[-1]
    if last is not exc:
        print(f"{type(last).__name__}: {last}", file=sys.stderr)


def install_excepthook() -> None:
    """Route uncaught exceptions through :func:`_report_uncaught` (once; the previous hook prints the tracebacks)."""
    if getattr(sys.excepthook, "_vessa", False):
        return
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        _report_uncaught(previous, exc_type, exc, tb)

    hook._vessa = True
    sys.excepthook = hook
