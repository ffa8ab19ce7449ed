"""``python -m adapters.simulator --port N [--host H] [--config knobs.json]``."""

from __future__ import annotations

import argparse

from adapters.simulator.server import run


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m adapters.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--config", default=None, help="JSON or TOML knob file")
    args = parser.parse_args(argv)
    print(f"provider simulator on http://{args.host}:{args.port} (admin API under /_sim)", flush=True)
    run(args.host, args.port, args.config)


if __name__ == "__main__":
    main()
