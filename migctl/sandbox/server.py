"""The sandbox's local AWS endpoint: moto's server, its DMS and ECS extensions, and the controller.

``python -m migctl.sandbox.server --port P --source-dsn DSN --target-dsn DSN``
serves the AWS APIs on 127.0.0.1:P and runs :class:`Controller` in a thread of
the same process, so the controller can reach moto's backends directly.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from migctl.sandbox import moto_dms, moto_ecs
from migctl.sandbox.controller import Controller


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="migctl-sandbox-aws")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source-dsn", required=True)
    parser.add_argument("--target-dsn", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--dir", help="the sandbox's folder (traffic on or off, writers' keys)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    moto_dms.install()
    moto_ecs.install()
    controller = Controller(
        args.source_dsn, args.target_dsn, region=args.region, sandbox_dir=args.dir
    )
    threading.Thread(target=controller.run_forever, name="sandbox-controller", daemon=True).start()

    from moto.server import main as moto_main

    moto_main(["-H", "127.0.0.1", "-p", str(args.port)])


if __name__ == "__main__":
    main(sys.argv[1:])
