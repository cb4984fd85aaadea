"""Errors that mean "the user asked for something that cannot be done", reported without a traceback."""

from ragtune.collection import CollectionNotFoundError
from ragtune.config import ConfigError
from ragtune.index.base import StoreBusyError
from ragtune.models.generator import GeneratorError
from ragtune.models.loading import ModelNotFoundError

USER_ERRORS = (
    CollectionNotFoundError,
    ConfigError,
    StoreBusyError,
    ModelNotFoundError,
    GeneratorError,
    FileNotFoundError,
    FileExistsError,
    ValueError,
    LookupError,  # unknown model version, adapter or index version
)
