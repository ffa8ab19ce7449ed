"""Soak mode: steady load for a long time, watching each worker's memory.

Runs ``--rate`` keyed payments per second (open loop) against a running ``switch serve`` for
``--minutes`` (10 by default) and samples the RSS of every worker process (children of
``--pid``, or the process itself with one worker) every ``--sample-s`` seconds. Passes when
every worker's RSS at the end is within ``--tolerance`` (10%) of its RSS after the first minute,
and no answer was a 5xx other than ``503 overloaded``.

    switch serve --port 8000 --workers 2 & PID=$!
    python benchmarks/soak.py --url http://127.0.0.1:8000 --key sk_test_... --pid $PID
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import httpx
import psutil
from overload_curve import post_payment  # run as a script: benchmarks/ is on the path


def workers_of(pid: int) -> list[psutil.Process]:
    """The worker processes of a ``switch serve`` (itself when it has no children)."""
    parent = psutil.Process(pid)
    children = [child for child in parent.children(recursive=True) if "python" in child.name().lower()]
    return children or [parent]


async def main() -> int:
    """Run the soak; exit 1 when memory grew past the tolerance or a request failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True)
    parser.add_argument("--pid", type=int, required=True, help="pid of switch serve")
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--sample-s", type=float, default=10)
    parser.add_argument("--tolerance", type=float, default=0.10)
    args = parser.parse_args()
    workers = workers_of(args.pid)
    baseline: dict[int, int] = {}
    failures = 0
    started = time.monotonic()
    end = started + args.minutes * 60
    next_sample = started
    tasks: set[asyncio.Task[tuple[int, float]]] = set()
    async with httpx.AsyncClient(base_url=args.url, timeout=30) as http:
        sent = 0
        while time.monotonic() < end:
            now = time.monotonic()
            due = int((now - started) * args.rate)
            while sent < due:
                task = asyncio.create_task(post_payment(http, args.key))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            if now >= next_sample:
                rss = {w.pid: w.memory_info().rss for w in workers}
                if not baseline and now - started >= 60:
                    baseline = rss
                shown = " ".join(f"{pid}:{value / 2**20:.1f}MiB" for pid, value in rss.items())
                print(f"{now - started:7.0f}s sent={sent} rss {shown}", flush=True)
                next_sample = now + args.sample_s
            await asyncio.sleep(0.005)
        for status, _ in await asyncio.gather(*tasks):
            failures += status not in (201, 503)
    final = {w.pid: w.memory_info().rss for w in workers}
    ok = failures == 0
    for pid, after in final.items():
        before = baseline.get(pid, after)
        growth = (after - before) / before
        print(f"worker {pid}: {before / 2**20:.1f} MiB after 1 min -> {after / 2**20:.1f} MiB ({growth:+.1%})")
        ok = ok and growth <= args.tolerance
    print("PASS" if ok else f"FAIL ({failures} failed requests)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
