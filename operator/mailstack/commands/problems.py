"""How every command reports invalid input: each problem on its own line, then a count.

Exit code 2 (``EXIT_INVALID``) for every command: the input was refused and nothing was written.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from mailstack.api.errors import Problem

EXIT_INVALID = 2


def report_problems(problems: Iterable[Problem]) -> int:
    """Print every problem on stderr (``error: file: Kind/ns/name field: message``)."""
    listed = list(problems)
    for problem in listed:
        print(f"error: {problem}", file=sys.stderr)
    print(f"{len(listed)} problem(s); nothing was written", file=sys.stderr)
    return EXIT_INVALID
