"""The ``mailstack`` command's entry point: ``mailstack agent`` without the rest of the package.

``mailstack agent`` runs beside every daemon of every mail pod for as long as the pod lives.
Importing the whole CLI for it (jinja2, cryptography, dnspython, PyYAML, bcrypt: everything
``render`` and ``dns`` need) cost each agent about 25 MB of memory for code it never runs, three
times per MailDomain. So ``agent`` is handed to ``mailstack.agent.command`` here, and every
other command goes to ``mailstack.commands``.
"""

from __future__ import annotations

import sys

# Not typing.TYPE_CHECKING (see mailstack.agent.command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["agent"]:
        from mailstack.agent.command import run_agent_command

        return run_agent_command(args[1:])
    from mailstack.commands.main import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
