"""One module per ``lenghu`` subcommand: ``add_parser(subparsers)`` and ``run(args)``."""
