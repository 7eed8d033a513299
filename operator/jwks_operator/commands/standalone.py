"""``jwks-operator standalone``: the whole product on one machine, no cluster.

Everything that can be wrong with the invocation (config, state directory, lock, publish
directory, default keyset) is checked before anything is served, and reported with exit
status 2, so that a service manager shows the reason instead of restarting in a loop.
"""

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from jwks_operator import logs
from jwks_operator.commands import argtypes
from jwks_operator.standalone.config import ConfigError, load_config, parse_keyset_ref
from jwks_operator.standalone.publishdir import PublishDir
from jwks_operator.standalone.statedir import StateDirError, StateDirLock, prepare_state_dir

EXIT_USAGE = 2
PROG = "jwks-operator standalone"


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    parser = subparsers.add_parser(
        "standalone",
        help="generate, rotate and serve keysets from a config file, without Kubernetes",
        description=(
            "Run the keyset lifecycle and the JWKS server on one machine. The config file "
            "holds JwksKeySet documents (the CRD's schema; namespace defaults to 'default'); "
            "private keys live in --state-dir. SIGHUP or editing the file reloads it."
        ),
    )
    parser.add_argument("--config", required=True, type=Path, help="YAML file of JwksKeySets")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".jwks-state"),
        help="private key state, one 0600 file per keyset (default: ./.jwks-state, mode 0700)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=argtypes.port, default=8080, help="listen port (default 8080)"
    )
    parser.add_argument(
        "--publish-dir",
        type=Path,
        help="also write <dir>/<namespace>/<name>/jwks.json for a static file server",
    )
    parser.add_argument(
        "--max-age",
        type=argtypes.max_age,
        default=300,
        help="Cache-Control max-age in seconds, capped at the next scheduled change (default 300)",
    )
    parser.add_argument(
        "--default-keyset",
        type=parse_keyset_ref,
        metavar="NAMESPACE/NAME",
        help="keyset served at /.well-known/jwks.json",
    )
    argtypes.add_tls_arguments(parser)
    logs.add_arguments(parser)
    parser.set_defaults(handler=handle)


def _refuse(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def handle(args: argparse.Namespace) -> int:
    # Imported here: the server and the planner are not needed by the other subcommands.
    from jwks_operator.server.tls import TlsError
    from jwks_operator.standalone.app import CannotListen, Options, default_keyset_problem, run

    try:
        tls = argtypes.tls_files(args)
    except TlsError as error:
        return _refuse(str(error))
    try:
        config = load_config(args.config)
    except ConfigError as error:
        for problem in error.problems:
            print(f"{PROG}: error: {problem}", file=sys.stderr)
        return _refuse(f"config {args.config} refused; nothing was started")
    missing = default_keyset_problem(args.default_keyset, config)
    if missing is not None:
        return _refuse(missing)
    default = args.default_keyset
    if default is None and len(config.keysets) == 1:
        default = next(iter(config.keysets))
    try:
        state_dir = prepare_state_dir(args.state_dir)
        lock = StateDirLock(state_dir)
        lock.acquire()
    except StateDirError as error:
        return _refuse(str(error))
    try:
        publish_dir = None
        if args.publish_dir is not None:
            publish_dir = PublishDir(args.publish_dir.resolve())
            try:
                publish_dir.prepare()
            except OSError as error:
                return _refuse(f"cannot use --publish-dir {args.publish_dir}: {error.strerror}")
        options = Options(
            config_path=args.config.resolve(),
            state_dir=state_dir,
            host=args.host,
            port=args.port,
            publish_dir=publish_dir.root if publish_dir else None,
            max_age=args.max_age,
            default_keyset=default,
            default_keyset_required=args.default_keyset is not None,
            tls=tls,
        )
        logs.configure(*logs.chosen(args, PROG))
        try:
            return asyncio.run(run(options, config, publish_dir))
        except CannotListen as error:
            return _refuse(argtypes.listen_problem(error.host, error.port, error.error))
    finally:
        lock.release()
