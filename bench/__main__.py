"""`python -m bench <benchmark>`: one subcommand per benchmark module.

Adding a benchmark is adding its module to BENCHMARKS: it provides NAME, HELP,
add_arguments(parser) for its own options and run(args) -> exit code. --json and --url are
common to all.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Protocol

from aiormq.exceptions import AMQPConnectionError

from bench import abuse, cluster, fanout, memory, notify, rpc, shell, startup, tasks
from bench.broker import default_url, display_url
from bench.procs import ServerFailed, install_sigterm_handler


class Benchmark(Protocol):
    NAME: str
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


BENCHMARKS: tuple[Benchmark, ...] = (rpc, startup, fanout, notify, tasks, cluster, memory, shell,
                                     abuse)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true",
                        help="print the figures as one JSON object")
    common.add_argument("--url", default=default_url(),
                        help="RabbitMQ URL (default: $MESH_BROKER_URL or %(default)s)")
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for benchmark in BENCHMARKS:
        sub = commands.add_parser(
            benchmark.NAME, parents=[common], help=benchmark.HELP,
            description=benchmark.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        benchmark.add_arguments(sub)
        sub.set_defaults(run=benchmark.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    install_sigterm_handler()
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("interrupted; servers stopped and bench queues deleted", file=sys.stderr)
        return 130
    except ServerFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (AMQPConnectionError, OSError) as exc:
        print(f"error: cannot use RabbitMQ at {display_url(args.url)}: {exc} "
              "(is it up, and is the URL right? `rabbitmq-server -detached` starts it)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
