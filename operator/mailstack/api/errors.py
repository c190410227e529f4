"""Validation problems and the exception that carries them.

Every problem names where it was found: the source (a file path, or ``cluster``), the document
(``MailDomain/ns/name``), and the field path inside it (``spec.aliases.sales[0]``). The CLI prints
them one per line; the operator turns them into a ``Valid=False`` condition. Parsing collects as
many problems as it can instead of stopping at the first, so a user fixes a file in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one field of one document."""

    document: str
    path: str
    message: str
    source: str = ""
    # What kind of problem, when a caller must tell it apart (``limits.LIMIT_EXCEEDED``).
    kind: str = ""
    # What the kind is about, when a caller needs that too (``secret_access.SECRET_NOT_FOUND``:
    # the Secret's name).
    subject: str = ""

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        field = f" {self.path}" if self.path else ""
        return f"{where}{self.document}{field}: {self.message}"


class ValidationError(Exception):
    """Raised with every problem found in a document or a set of documents."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class FieldError(Exception):
    """One bad value, raised by the field validators; the parser adds document and path."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)
