"""Allow ``python -m mailstack``."""

from mailstack.entry import main

raise SystemExit(main())
