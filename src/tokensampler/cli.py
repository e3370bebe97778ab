"""``tokensampler`` / ``python -m tokensampler``: a thin shell over the library.

Subcommands import what they need when they run, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def _info(args: argparse.Namespace) -> int:
    from .info import collect, render

    report = collect(check=args.check)
    if args.json:
        import json

        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from . import doctor

    return doctor.main(args)


def _generate(args: argparse.Namespace) -> int:
    from . import demo

    return demo.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokensampler",
        description="Exact, bounded, fast next-token sampling for PyTorch.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = sub.add_parser("info", help="versions, devices and which backends are usable")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.add_argument("--check", action="store_true",
                      help="also run every op once on each GPU, showing whether the automatic "
                           "backend falls back to the reference there (compiles the kernels)")
    info.set_defaults(func=_info)

    doc = sub.add_parser("doctor", help="check each stage (device, compiler, kernels) in a "
                                        "child process with a timeout; names the broken one")
    from .doctor import add_arguments

    add_arguments(doc)
    doc.set_defaults(func=_doctor)

    gen = sub.add_parser("generate", help="generate text with a real language model")
    from .demo_args import add_generate_arguments

    add_generate_arguments(gen)
    gen.set_defaults(func=_generate)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
