"""End-to-end throughput: the switch against a bare Litestar endpoint, same server, same wrk, same run.

Usage::

    .venv/bin/python benchmarks/e2e_throughput.py [--connections 64] [--duration 15] [--threads 2]

Needs ``wrk`` on PATH. Uses ``SWITCH_DATABASE_URL`` when set (the database must be empty or a
switch database), otherwise an embedded PostgreSQL in a temporary directory. Both servers run
one uvicorn worker with uvloop and httptools; wrk posts a card authorization (automatic capture,
sandbox provider, no artificial latency) with a Bearer key and no Idempotency-Key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import asyncpg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from switch.embedded import embedded_database_url  # noqa: E402
from switch.ledger.migrate import migrate  # noqa: E402
from switch.merchants import create_merchant  # noqa: E402

BODY = {
    "amount": 1250,
    "currency": "EUR",
    "payment_method": {
        "type": "card",
        "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"},
    },
    "customer": {"email": "ada@example.com", "country": "DE"},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers: good enough for a server that 405s a GET
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _wrk(url: str, key: str, connections: int, duration: int, threads: int) -> tuple[float, str, str]:
    lua = (
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(BODY))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("non2xx=%d\\n", summary.errors.status))\n'
        '  io.write(string.format("p50=%.2fms p99=%.2fms\\n",\n'
        "    latency:percentile(50)/1000, latency:percentile(99)/1000))\n"
        "end\n"
    )
    with tempfile.TemporaryDirectory() as scratch:
        script = os.path.join(scratch, "post.lua")
        with open(script, "w") as handle:
            handle.write(lua)
        result = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "-s", script, "--latency", url],
            capture_output=True,
            text=True,
            check=True,
        )
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))
    percentiles = re.search(r"p50=\S+ p99=\S+", result.stdout).group(0)
    errors = re.search(r"non2xx=(\d+)", result.stdout).group(1)
    return rate, percentiles, errors


def _serve(server: str, target: str, factory: bool, port: int, env: dict[str, str]) -> subprocess.Popen:
    if server == "granian":
        command = [
            os.path.join(os.path.dirname(sys.executable), "granian"), "--interface", "asgi", "--loop", "uvloop",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-access-log",
            "--log-level", "warning", "--backlog", "4096", *(["--factory"] if factory else []), target,
        ]  # fmt: skip
    else:
        command = [
            sys.executable, "-m", "uvicorn", *(["--factory"] if factory else []), target,
            "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning", "--backlog", "4096",
        ]  # fmt: skip
    return subprocess.Popen(command, env=env, cwd=ROOT)


async def _prepare(dsn: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        await migrate(connection)
        _, key = await create_merchant(connection, f"bench-{time.time_ns()}")
        return key
    finally:
        await connection.close()


def main() -> int:
    """Run both servers under wrk and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat every measurement this many times, interleaved; medians reported"
    )
    parser.add_argument(
        "--server",
        choices=("uvicorn", "granian"),
        action="append",
        help="ASGI server(s) to measure; repeat to compare (default: uvicorn, the one `switch serve` uses)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    data_dir = tempfile.mkdtemp(prefix="switch-bench-")
    os.chmod(data_dir, 0o755)
    dsn = os.environ.get("SWITCH_DATABASE_URL") or embedded_database_url(data_dir)
    key = asyncio.run(_prepare(dsn))
    env = {**os.environ, "SWITCH_DATABASE_URL": dsn, "SWITCH_LOG_LEVEL": "WARNING"}
    servers = args.server or ["uvicorn"]
    runs = [
        (f"{label} ({server_name})", target, factory, server_name)
        for server_name in servers
        for label, target, factory in (
            ("bare Litestar endpoint", "benchmarks.bare_app:app", False),
            ("switch POST /v1/payments", "switch.app:create_app_from_env", True),
        )
    ]
    measured: dict[str, list[tuple[float, str, str]]] = {name: [] for name, _, _, _ in runs}
    for _ in range(args.rounds):
        for name, target, factory, server_name in runs:
            port = _free_port()
            server = _serve(server_name, target, factory, port, env)
            try:
                _wait_ready(f"http://127.0.0.1:{port}/v1/payments")
                url = f"http://127.0.0.1:{port}/v1/payments"
                _wrk(url, key, args.connections, 3, args.threads)  # warm-up: connections, caches
                measured[name].append(_wrk(url, key, args.connections, args.duration, args.threads))
            finally:
                server.terminate()
                server.wait(timeout=30)
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, one worker, uvloop, {args.rounds} round(s)")
    print(f"{'endpoint':<40} {'median req/s':>12}  {'runs':<24} latency of the median run")
    medians: list[float] = []
    for name, samples in measured.items():
        ordered = sorted(samples)
        median = ordered[len(ordered) // 2]
        medians.append(median[0])
        runs_text = " ".join(f"{rate:.0f}" for rate, _, _ in samples)
        print(f"{name:<40} {median[0]:>12.0f}  {runs_text:<24} {median[1]}  non-2xx={median[2]}")
    names = list(measured)
    for index in range(0, len(names), 2):
        print(f"{names[index + 1]} / {names[index]} = {medians[index + 1] / medians[index]:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
