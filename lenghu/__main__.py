"""``python -m lenghu`` runs the command-line interface."""

from lenghu.cli import console

console()
