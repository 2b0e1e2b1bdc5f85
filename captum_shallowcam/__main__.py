"""``python -m captum_shallowcam``: the command line of :mod:`captum_shallowcam.cli`."""

from captum_shallowcam.cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    main()
