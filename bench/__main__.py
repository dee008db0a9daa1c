"""Entry point of ``python -m bench``."""

from ._cli import main

raise SystemExit(main())
