"""The one console script, `kiosk`. Each area registers its own subcommands.

An area module exposes ``register(subparsers)``, adding its parsers with ``set_defaults(func=...)``
where ``func(args) -> int`` is the exit status. Modules are listed here and imported on start so
`kiosk --help` shows every command; heavy imports belong inside the command functions.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import signal
import sys

# (module, what it adds) — the order is the order in `kiosk --help`.
AREAS: tuple[str, ...] = (
    "onestop.host.demo",  # kiosk demo
    "onestop.host.gateway.cli",  # kiosk gateway ..., kiosk keys ...
    "onestop.host.settlement.cli",  # kiosk policy ...
    "onestop.host.fwtools",  # kiosk fw ...
    "onestop.host.bench.cli",  # kiosk bench ...
    "onestop.host.tui",  # kiosk tui
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiosk",
        description="Onestop: one-stop medical-insurance settlement kiosks and their gateway.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in AREAS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the area: surface it
                raise
            continue  # area not built yet
        module.register(sub)
    return parser


def _command_parser(parser: argparse.ArgumentParser,
                    argv: list[str]) -> argparse.ArgumentParser:
    """The parser of the command `argv` names (`kiosk gateway audit`'s for `gateway audit
    ...`), or `parser` if it names none."""
    for word in argv:
        commands = [action for action in parser._actions
                    if isinstance(action, argparse._SubParsersAction)]
        if not commands or word not in commands[0].choices:
            if not word.startswith("-") and commands:
                break
            continue
        parser = commands[0].choices[word]
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    words = sys.argv[1:] if argv is None else argv
    args, unknown = parser.parse_known_args(words)
    if unknown:
        # argparse says so as `kiosk`, with the top-level usage, whichever command it was: an
        # operator's `kiosk gateway audit --db URL --jsno` must be told by `kiosk gateway audit`
        _command_parser(parser, words).error(f"unrecognized arguments: {' '.join(unknown)}")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        sys.exit(2)
    try:
        status = func(args)
        sys.stdout.flush()  # here, where a reader that left is caught, not at exit
    except KeyboardInterrupt:
        status = 130
    except BrokenPipeError:
        if not _stdout_reader_left():
            raise  # some other pipe or socket of the command's: a real failure
        # The reader left (`| head`): what it read is all it wanted. No traceback, and an exit
        # status of its own, as a shell's (128 + SIGPIPE), not a command's verdict (audit: 1).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 128 + signal.SIGPIPE
    sys.exit(int(status or 0))


def _stdout_reader_left() -> bool:
    """Whether standard output is a pipe whose reading end is closed (poll reports POLLERR)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _fd, events in poller.poll(0))
    except (OSError, ValueError):
        return False


if __name__ == "__main__":
    main()
