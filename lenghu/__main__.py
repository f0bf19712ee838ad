"""``python -m lenghu`` runs the command-line interface."""

from lenghu.cli import main

raise SystemExit(main())
