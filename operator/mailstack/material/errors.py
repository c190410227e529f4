"""The material package's one exception: a key, certificate or password that is unusable."""

from __future__ import annotations


class MaterialError(Exception):
    """A key, certificate or password that cannot be used; the message says what is wrong.

    Raised by the loaders and the password hasher. ``resolve_material`` turns it into either a
    regenerated value (for operator-owned material) or a ``Problem`` (for user-supplied values).
    """

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)
