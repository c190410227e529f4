"""Allow ``python -m mailstack``."""

from mailstack.cli import main

raise SystemExit(main())
