"""The error types of ksmdiff's public surface.

Every error a user can cause by what they feed the tool is an :class:`InputError` (or a
subclass) that names where the problem is and what was expected; the CLI turns it into
one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class KsmdiffError(Exception):
    """Base class of every error ksmdiff raises on purpose."""


@dataclass(frozen=True)
class Location:
    """A place in an input file; line and column count from 1."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class InputError(KsmdiffError):
    """Bad input: a syntax or semantic error in a file the user gave us.

    ``str(err)`` is ``FILE:LINE:COL: error: MESSAGE`` (plus ``expected ...`` when known).
    """

    def __init__(self, message: str, location: Location | None = None,
                 expected: str | None = None):
        self.message = message
        self.location = location
        self.expected = expected
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.location}: " if self.location else ""
        text = f"{where}error: {self.message}"
        if self.expected:
            text += f"; expected {self.expected}"
        return text


class UsageError(KsmdiffError):
    """A bad command line or API argument (exit code 2)."""


class InvalidArgument(UsageError, ValueError):
    """An API function got an argument of the wrong type or value (like Hypothesis's)."""


class EnvironmentProblem(KsmdiffError):
    """The machine cannot do what was asked (no root, no compiler, no KSM, ...)."""
