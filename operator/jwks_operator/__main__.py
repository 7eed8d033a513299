"""Allows ``python -m jwks_operator`` where the console script is not on PATH."""

from jwks_operator.cli import main

raise SystemExit(main())
