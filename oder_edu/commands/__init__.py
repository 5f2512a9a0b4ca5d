"""The ``oder-edu`` commands (``oder_edu.cli``): thin argparse glue over the library, which (like
the notebooks) never imports them. Each module exposes ``add_arguments(parser)`` and ``main(args)``."""
