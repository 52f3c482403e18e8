"""Error types with messages that name the problem and the fix."""


class VessaError(Exception):
    """Base class of the errors VESSA raises on bad input."""


class DataError(VessaError, ValueError):
    """A data set, image or label cannot be used as given."""


class CheckpointError(VessaError, FileNotFoundError):
    """A checkpoint or pretrained-weight file is missing or does not fit the model."""
