"""Serve the baseline with uvicorn, using the same options as ``consentry serve``.

``python -m bench.baseline --port 8101 --workers 1`` (the database URL and session secret
come from the environment, see :mod:`bench.baseline.app`).
"""

from __future__ import annotations

import argparse

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # The same call as server/cli/serving.py `serve`: same server, loop, HTTP parser and logging.
    uvicorn.run(
        "bench.baseline.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_config=None,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
