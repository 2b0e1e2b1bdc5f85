"""Command line: ``python -m captum_shallowcam {demo,explain,benchmark,report,sanity}``.

Thin by design: it parses arguments, checks them, and calls the public API
(:mod:`captum_shallowcam.models`, :mod:`captum_shallowcam.methods`,
:mod:`captum_shallowcam.metrics`, :mod:`captum_shallowcam.experiments`). A
mistake in the arguments (unknown method, layer or class, a missing photo,
folder or weights file) is reported before anything is computed, in one line on
stderr, with exit status 2.

One module per command, each with ``add_parser(commands)`` (its arguments;
it sets ``func=run``) and ``run(args)``. A new command is a module here and
one entry in :data:`COMMANDS`.
"""

import argparse
import sys

import torch

from captum_shallowcam.cli import benchmark, demo, explain, report, sanity
from captum_shallowcam.cli._common import PROG, UsageError, _Parser

__all__ = ["COMMANDS", "PROG", "UsageError", "build_parser", "main"]

#: The commands, in the order of the help.
COMMANDS = (demo, explain, benchmark, report, sanity)

DESCRIPTION = f"""\
Class activation maps for shallow layers (LayerShallowCam, LayerCam,
LayerRelevanceCam) and their deletion/insertion scores.

examples:
  {PROG} demo
  {PROG} explain photo.jpg --layer stage2,stage3 --out explanation.png
  {PROG} benchmark --images DIR --step 224
  {PROG} report run1.json run2.json --out merged.json
  {PROG} sanity --images DIR --layers stage2 --methods layercam,shallowcam

'{PROG} COMMAND --help' lists a command's options and their defaults.
"""


def build_parser() -> argparse.ArgumentParser:
    """The parser: one sub-parser per module of :data:`COMMANDS`."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog=PROG, description=DESCRIPTION, formatter_class=formatter)
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", title="commands"
    )
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_grad_enabled(True)
    try:
        args.func(args)
    except UsageError as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
