"""`python -m ghpulse.testing.fake_github --data DIR --port N [--latency-ms N]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ghpulse.testing.fake_github import SAMPLE_DIR
from ghpulse.testing.fake_github.server import FakeGitHub


def main(argv: list[str] | None = None) -> None:
    """Serve a dataset until interrupted; prints the base URL once listening."""
    parser = argparse.ArgumentParser(prog="python -m ghpulse.testing.fake_github")
    parser.add_argument("--data", type=Path, default=SAMPLE_DIR, help="dataset directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay of every answer")
    parser.add_argument("--rate-limit", type=int, default=5000, help="requests per hour")
    parser.add_argument("--token", default=None, help="require this Bearer token")
    args = parser.parse_args(argv)
    fake = FakeGitHub(
        args.data,
        latency=args.latency_ms / 1000,
        host=args.host,
        port=args.port,
        rate_limit=args.rate_limit,
        token=args.token,
    )
    print(fake.url, flush=True)
    try:
        fake.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
