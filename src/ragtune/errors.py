"""User errors: "what you asked for cannot be done, and here is what to do".

Only a ``RagtuneError`` becomes a one-line CLI error (exit 2) or an HTTP 4xx/5xx with its
message; any other exception is a bug and keeps its traceback (CLI) or becomes a 500 with an
error id in the server log. Each class also derives from the built-in exception it refines, so
``except ValueError`` / ``LookupError`` code written against the standard library still holds.

Example:
    >>> from ragtune.errors import InputError, RagtuneError
    >>> e = InputError("corpus.jsonl line 3: field 'text' must be a string")
    >>> isinstance(e, RagtuneError), isinstance(e, ValueError), e.status, e.kind
    (True, True, 400, 'invalid_request')
"""

from __future__ import annotations


class RagtuneError(Exception):
    """Base of every user error; ``status`` and ``kind`` are what the HTTP API answers."""

    status = 400
    kind = "invalid_request"


class InputError(RagtuneError, ValueError):
    """Bad input: a file, record, field, option or argument. Name it and say what to do."""


class MissingInputError(RagtuneError, FileNotFoundError):
    """A file or folder the user named does not exist (or lacks a part it needs)."""


class NotFoundError(RagtuneError, LookupError):
    """A named thing (collection, model version, adapter, index version, answer) does not exist."""

    status = 404
    kind = "not_found"


class AlreadyExistsError(RagtuneError, FileExistsError):
    status = 409
    kind = "conflict"


class StateError(RagtuneError, ValueError):
    """The request is well formed but the current state forbids it (not ready, nothing to undo)."""

    status = 409
    kind = "conflict"


class BusyError(RagtuneError, RuntimeError):
    """Another live process owns the resource; the message names it."""

    status = 409
    kind = "conflict"


class UpstreamError(RagtuneError, RuntimeError):
    """A service ragtune calls (an OpenAI-compatible endpoint) failed or answered nonsense."""

    status = 502
    kind = "generator_error"
