"""Event handlers the VESSA trainers and evaluators attach to themselves."""

from __future__ import annotations

import logging
from typing import Sequence

from ignite.engine import Engine, Events

from vessa.errors import VessaError, error_chain

logger = logging.getLogger(__name__)


def _raise(engine: Engine, err: Exception) -> None:
    """A :class:`VessaError` ends the run without a logged traceback (its message is the command's last line);
    any other exception is logged with its traceback first, as MONAI's StatsHandler logs it."""
    if not any(isinstance(e, VessaError) for e in error_chain(err)):
        logger.exception(f"Exception: {err}")
    raise err


def attach_handlers(engine: Engine, handlers: Sequence | None) -> None:
    """Attach ``handlers`` after the exception handler above: ignite stops at the first EXCEPTION_RAISED handler
    that raises, so MONAI's StatsHandler does not log a user's error as a traceback."""
    engine.add_event_handler(Events.EXCEPTION_RAISED, _raise)
    for handler in handlers or ():
        handler.attach(engine)
