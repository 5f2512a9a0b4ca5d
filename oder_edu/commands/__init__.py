"""The ``oder-edu`` commands: thin argparse glue over the library (nothing in the library, and
no notebook, imports this package). Each module exposes ``add_arguments(parser)`` and
``main(args)``; ``oder_edu.cli`` imports a module only when its command runs."""
