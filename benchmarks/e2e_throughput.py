"""End-to-end throughput: the switch against a bare Litestar endpoint, same server, same wrk, same run.

Usage::

    .venv/bin/python benchmarks/e2e_throughput.py [--mode keyed|unkeyed|both] [--rounds 3] [--duration 8]
    .venv/bin/python benchmarks/e2e_throughput.py --profiles routing-risk --mode keyed --rounds 5 --duration 8

Needs ``wrk`` on PATH. Uses ``SWITCH_DATABASE_URL`` when set (the database must be empty or a
switch database), otherwise an embedded PostgreSQL in a temporary directory. Both servers run
one worker with uvloop; wrk posts a card authorization (automatic capture, sandbox provider, no
artificial latency, an amount that varies per request) with a Bearer key. In ``keyed`` mode every
request carries its own ``Idempotency-Key``, as Stripe's client libraries send; ``unkeyed``
requests carry none. The bare endpoint gets the same requests without a key.

Risk's velocity rules are live on the payment path, so every request carries its own Luhn-valid
card (424242, a US BIN), its own email and, by default, its own US documentation IPv6 address:
no rule fires and every payment reaches the provider. The servers run with the per-key rate limit
lifted. ``--profiles routing-risk`` measures, interleaved, the switch with ``SWITCH_ROUTING=smart``
and ``SWITCH_RISK=on`` (the defaults), with ``static`` routing, with risk ``off``, and the bare
endpoint, and reports what routing and risk each cost against the same run with them off. Each
switch merchant gets a 20-rule routing config whose last rule matches (``--no-routing-config``: none).

The run fails (exit 1) on any non-2xx response or socket error, when the payments written do
not account for the 2xx responses wrk counted, when a payment written during a run is not
``captured`` with the expected risk outcome (a declined, reviewed or 3-D Secure payment skips the
provider and would flatter the rate), or when ``switch ledger verify`` finds a violation afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

import asyncpg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from switch.embedded import embedded_database_url  # noqa: E402
from switch.ledger.migrate import migrate  # noqa: E402
from switch.ledger.verify import verify_ledger  # noqa: E402
from switch.merchants import create_merchant  # noqa: E402

# Filled in per request by the Lua script: the amount ("%d"), then a card number, an email and an
# IP address ("%s" each), so that no risk velocity rule ever sees the same card, email or IP twice.
BODY_TEMPLATE = (
    json.dumps(
        {
            "amount": "@AMOUNT@",
            "currency": "EUR",
            "payment_method": {
                "type": "card",
                "card": {
                    "number": "@CARD@",
                    "exp_month": 12,
                    "exp_year": 2031,
                    "cvc": "123",
                    "holder_name": "@HOLDER@",
                },
            },
            "customer": {"email": "@EMAIL@", "ip": "@IP@", "country": "US"},
        }
    )
    .replace('"@AMOUNT@"', "%d")
    .replace("@CARD@", "%s")
    .replace("@EMAIL@", "%s")
    .replace("@IP@", "%s")
)
# The same body without an IP address (``--customer-ip none``): risk then skips the IP rules.
BODY_TEMPLATE_NO_IP = BODY_TEMPLATE.replace(', "ip": "%s"', "")

# Each thread gets its own Lua state, so the per-thread prefix is drawn in the main state
# (``setup``), seeded from Python: threads seeding themselves from os.time() would collide.
# ``request`` runs per request; ``response`` counts statuses because wrk's summary only counts
# statuses above 399; ``done`` prints one parseable line.
#
# Cards: 424242 (a US BIN in the bundled table; the sandbox approves any Luhn-valid number other
# than its listed test cards), nine digits from a random per-thread base plus the request counter,
# and the Luhn check digit. Emails: a random per-thread tag plus the counter, in letters. IPs: per
# thread, two random hextets inside 2001:db8::/33 (the IPv6 documentation range the bundled IP
# table places in the US, so the geo rule sees US against a US card), then the counter: a new IP
# for each request.
LUA = r"""
local keyed = @KEYED@
local with_ip = @WITH_IP@
local run = "@RUN@"
local template = @TEMPLATE@
local threads = {}
math.randomseed(@SEED@)

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer @KEY@"

function setup(thread)
  local index = #threads + 1
  thread:set("prefix", string.format("bench-%s-%d-%08x-", run, index, math.random(0, 0x7fffffff)))
  thread:set("card_base", math.random(0, 999999999))
  thread:set("email_tag", letters(index * 0x80000000 + math.random(0, 0x7fffffff)))
  thread:set("ip_prefix", string.format("2001:db8:%x:%x", math.random(0, 0x7fff), math.random(0, 0xffff)))
  table.insert(threads, thread)
end

-- A number in base 26, written in letters: the switch refuses a field holding a digit run that
-- passes the Luhn check (a card number pasted into the wrong field), and an email made of thread
-- prefixes and counters in digits would now and then hold one.
function letters(number)
  local out = {}
  repeat
    table.insert(out, string.char(97 + number % 26))
    number = math.floor(number / 26)
  until number == 0
  return table.concat(out)
end

-- The Luhn check digit of a digit string: double every second digit from the right.
local function luhn_digit(payload)
  local sum, double = 0, true
  for position = #payload, 1, -1 do
    local digit = string.byte(payload, position) - 48
    if double then
      digit = digit * 2
      if digit > 9 then digit = digit - 9 end
    end
    sum = sum + digit
    double = not double
  end
  return (10 - sum % 10) % 10
end

function init(args)
  sent = 0
  statuses = {}
end

function request()
  sent = sent + 1
  if keyed then
    wrk.headers["Idempotency-Key"] = prefix .. sent
  end
  local payload = string.format("424242%09d", (card_base + sent) % 1000000000)
  local card = payload .. luhn_digit(payload)
  local email = string.format("b%s-%s@example.com", email_tag, letters(sent))
  local body
  if with_ip then
    local ip = string.format("%s:%x:%x::1", ip_prefix, math.floor(sent / 65536) % 65536, sent % 65536)
    body = string.format(template, 1000 + sent % 9000, card, email, ip)
  else
    body = string.format(template, 1000 + sent % 9000, card, email)
  end
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  -- The first unexpected answer's body, so that a failed run says why.
  if (status < 200 or status >= 300) and sample == nil then
    sample = string.gsub(string.sub(body or "", 1, 300), "%s", "_")
  end
end

function done(summary, latency, requests)
  local sent_total, ok, counts, sampled = 0, 0, {}, "-"
  for _, thread in ipairs(threads) do
    sent_total = sent_total + thread:get("sent")
    sampled = thread:get("sample") or sampled
    for status, count in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + count
      if status >= 200 and status < 300 then ok = ok + count end
    end
  end
  local listed = {}
  for status, count in pairs(counts) do table.insert(listed, status .. ":" .. count) end
  local e = summary.errors
  io.write(string.format(
    "wrk-result requests=%d duration_us=%d sent=%d ok=%d connect=%d read=%d write=%d status=%d timeout=%d "
      .. "p50_us=%d p99_us=%d statuses=%s sample=%s\n",
    summary.requests, summary.duration, sent_total, ok, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), table.concat(listed, ","), sampled))
end
"""


@dataclass
class Run:
    """One measured wrk run and what the switch wrote during it."""

    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    ok: int
    in_flight: int
    errors: dict[str, int]
    statuses: str
    sample: str = "-"
    payments: int | None = None
    keys_stored: int | None = None
    # Payments written during the run by status and by risk outcome (decision, or the SCA reason
    # ``risk_disabled`` when risk is off): anything but captured means the provider was skipped.
    outcomes: dict[str, int] = field(default_factory=dict)
    batch_ops: float | None = None
    batch_ms: float | None = None
    batches: float | None = None
    # CPU seconds spent during the measured run: the server process, this database's PostgreSQL
    # backends, wrk, and every process on the machine (others' jobs included), with the wall time.
    cpu: dict[str, float] = field(default_factory=dict)
    busiest: list[str] = field(default_factory=list)


@dataclass
class Target:
    """An endpoint under test: the bare app or the switch in one mode, on one server."""

    name: str
    server: str
    mode: str
    app: str
    factory: bool
    merchant: str = ""
    key: str = ""
    runs: list[Run] = field(default_factory=list)
    # Extra environment of the server (``SWITCH_ROUTING``, ``SWITCH_RISK``) and its short name.
    env: dict[str, str] = field(default_factory=dict)
    profile: str = "default"
    configured: bool = False


# The profiles of ``--profiles routing-risk``: (short name, server environment).
PROFILES: tuple[tuple[str, dict[str, str]], ...] = (
    ("smart+risk", {"SWITCH_ROUTING": "smart", "SWITCH_RISK": "on"}),
    ("static+risk", {"SWITCH_ROUTING": "static", "SWITCH_RISK": "on"}),
    ("smart, risk off", {"SWITCH_ROUTING": "smart", "SWITCH_RISK": "off"}),
)
# (what is compared, profile measured, same run with the feature off, the issue's largest fall).
COMPARISONS: tuple[tuple[str, str, str, float], ...] = (
    ("routing on (issue 9)", "smart+risk", "static+risk", 0.05),
    ("risk on (issue 10)", "smart+risk", "smart, risk off", 0.10),
)


def routing_document() -> dict[str, object]:
    """A 20-rule routing config whose last rule matches the benchmark's payments (worst case).

    The benchmark merchant has only the sandbox account, so every rule names it; the matching
    rule uses ``reliable``, which reads the success-rate statistics that each attempt updates.
    """
    rules: list[dict[str, object]] = [
        {
            "name": f"usd-{index}",
            "when": {"currency": ["USD"], "card_country": ["US"], "amount": {"gte": index}},
            "strategy": "priority",
            "candidates": ["sandbox"],
        }
        for index in range(19)
    ]
    rules.append(
        {
            "name": "eur-cards",
            "when": {"currency": ["EUR"], "payment_method": ["card"], "bin_prefix": ["4"], "amount": {"lt": 500_000}},
            "strategy": "reliable",
            "candidates": ["sandbox"],
        }
    )
    return {"rules": rules, "default": {"strategy": "priority", "candidates": ["sandbox"]}}


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


def _template(with_ip: bool, holder_name: str) -> str:
    """The body template, with the cardholder name (screened by risk) filled in or left out."""
    template = BODY_TEMPLATE if with_ip else BODY_TEMPLATE_NO_IP
    if not holder_name:
        return template.replace(', "holder_name": "@HOLDER@"', "")
    # The template goes through Lua's string.format, where "%" starts a directive.
    return template.replace("@HOLDER@", json.dumps(holder_name)[1:-1].replace("%", "%%"))


def _wrk(
    url: str, key: str, keyed: bool, body: str, with_ip: bool, connections: int, duration: int, threads: int
) -> Run:
    lua = (
        LUA.replace("@KEYED@", "true" if keyed else "false")
        .replace("@WITH_IP@", "true" if with_ip else "false")
        .replace("@RUN@", secrets.token_hex(4))
        .replace("@SEED@", str(secrets.randbelow(2**31)))
        .replace("@KEY@", key)
        .replace("@TEMPLATE@", json.dumps(body))
    )
    with tempfile.TemporaryDirectory() as scratch:
        script = os.path.join(scratch, "post.lua")
        with open(script, "w") as handle:
            handle.write(lua)
        result = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "-s", script, url],
            capture_output=True,
            text=True,
            check=False,
        )
    match = re.search(r"^wrk-result (.*)$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed (exit {result.returncode}): {result.stdout}{result.stderr}")
    fields = dict(item.split("=", 1) for item in match.group(1).split())
    numbers = {name: int(value) for name, value in fields.items() if name not in ("statuses", "sample")}
    return Run(
        rate=numbers["requests"] / (numbers["duration_us"] / 1e6),
        p50_ms=numbers["p50_us"] / 1000,
        p99_ms=numbers["p99_us"] / 1000,
        requests=numbers["requests"],
        ok=numbers["ok"],
        # wrk 4.1 calls request() once on the first thread to probe for pipelining and never sends it.
        in_flight=numbers["sent"] - 1 - numbers["requests"],
        errors={name: numbers[name] for name in ("connect", "read", "write", "status", "timeout")},
        statuses=fields["statuses"],
        sample=fields["sample"],
    )


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


async def _prepare(dsn: str, targets: list[Target]) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await migrate(connection)
        for target in targets:
            if target.factory:
                # One merchant per switch target, so its payments and stored keys can be counted apart.
                label = f"bench-{target.mode}-{target.profile}-{time.time_ns()}"
                merchant, target.key = await create_merchant(connection, label)
                target.merchant = merchant.id
            else:
                target.key = "bare"
    finally:
        await connection.close()


async def _written(dsn: str, merchant: str) -> tuple[int, int]:
    """Payments and idempotency keys stored for ``merchant``, once the count has stopped moving."""
    connection = await asyncpg.connect(dsn)
    try:
        previous: tuple[int, int] | None = None
        deadline = time.monotonic() + 15
        while True:
            # Requests abandoned by wrk when it stops are still completing in the server.
            row = await connection.fetchrow(
                "SELECT (SELECT count(*) FROM payments WHERE merchant_id = $1) AS payments,"
                " (SELECT count(*) FROM idempotency_keys WHERE merchant_id = $1 AND status_code <> 0) AS keys",
                merchant,
            )
            current = (row["payments"], row["keys"])
            if current == previous or time.monotonic() > deadline:
                return current
            previous = current
            await asyncio.sleep(0.5)
    finally:
        await connection.close()


async def _outcomes(dsn: str, merchant: str) -> dict[str, int]:
    """The merchant's payments so far, counted by status and by risk outcome."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT status, CASE WHEN body->'risk'->'sca'->>'reason' = 'risk_disabled' THEN 'risk_disabled'"
            " ELSE coalesce(body->'risk'->>'decision', 'none') END AS risk, count(*) AS n"
            " FROM payments WHERE merchant_id = $1 GROUP BY 1, 2",
            merchant,
        )
    finally:
        await connection.close()
    return {f"{row['status']}/risk={row['risk']}": row["n"] for row in rows}


def _configure_routing(base: str, key: str) -> None:
    """Store the 20-rule routing config for the merchant (``static`` ignores it)."""
    request = urllib.request.Request(
        f"{base}/v1/routing",
        data=json.dumps(routing_document()).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        if reply.status != 200:
            raise RuntimeError(f"PUT /v1/routing answered {reply.status}")


def _scrape(url: str) -> dict[str, float]:
    """The ledger batch histograms' sums and counts from the switch's /metrics."""
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    wanted = r"(switch_ledger_batch_(?:ops|seconds)_(?:sum|count)) ([0-9.e+-]+)"
    return {name: float(value) for name, value in re.findall(wanted, text)}


_TICK = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            # Fields after the parenthesised command name; utime and stime are the 14th and 15th.
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # gone, or not ours to read
    return (int(fields[11]) + int(fields[12])) / _TICK


async def _backend_cpu(dsn: str) -> dict[int, float]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    return {row["pid"]: _process_cpu(row["pid"]) for row in rows}


# PostgreSQL's processes shared by every database: our writes make them work (WAL, checkpoints).
_PG_SHARED = re.compile(r"^postgres: .*(walwriter|checkpointer|background writer|autovacuum)")


def _processes() -> dict[int, tuple[str, float]]:
    """Every readable process: its command line and CPU seconds so far."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            found[int(entry)] = (command, _process_cpu(int(entry)))
    return found


@dataclass
class _CpuSnapshot:
    wall: float
    server: float
    backends: dict[int, float]
    wrk: float
    machine: float
    processes: dict[int, tuple[str, float]]


def _cpu_snapshot(dsn: str, server_pid: int) -> _CpuSnapshot:
    with open("/proc/stat") as handle:
        ticks = [int(value) for value in handle.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    # wrk is the only child reaped while the server runs, so the children's usage is wrk's.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return _CpuSnapshot(
        wall=time.monotonic(),
        server=_process_cpu(server_pid),
        backends=asyncio.run(_backend_cpu(dsn)),
        wrk=children.ru_utime + children.ru_stime,
        machine=(sum(ticks[:8]) - idle) / _TICK,
        processes=_processes(),
    )


def _cpu_delta(before: _CpuSnapshot, after: _CpuSnapshot, server_pid: int) -> tuple[dict[str, float], list[str]]:
    """CPU seconds by consumer during the run, and the busiest processes outside the benchmark."""
    delta = {
        "wall": after.wall - before.wall,
        # The server process only: granian's worker processes land in "rest".
        "server": after.server - before.server,
        # A backend opened during the run started from zero; one closed during it is lost (rare).
        "postgres": sum(cpu - before.backends.get(pid, 0.0) for pid, cpu in after.backends.items()),
        "pg shared": 0.0,
        "wrk": after.wrk - before.wrk,
        "machine": after.machine - before.machine,
    }
    foreign = []
    for pid, (command, cpu) in after.processes.items():
        if pid == server_pid or pid in after.backends:
            continue
        used = cpu - before.processes.get(pid, ("", 0.0))[1]
        if _PG_SHARED.match(command):
            delta["pg shared"] += used
        elif used > 0:
            foreign.append((used, command))
    known = sum(delta[name] for name in ("server", "postgres", "pg shared", "wrk"))
    # Whatever the machine did besides the benchmark: others' jobs, and processes that ended.
    delta["rest"] = delta["machine"] - known
    busiest = [f"{used:.1f}s {command[:60]}" for used, command in sorted(foreign, reverse=True)[:3]]
    return delta, busiest


def _verify(dsn: str) -> tuple[bool, str]:
    async def run() -> tuple[bool, str]:
        connection = await asyncpg.connect(dsn)
        try:
            report = await verify_ledger(connection)
            return report.ok, report.render()
        finally:
            await connection.close()

    return asyncio.run(run())


def _measure(target: Target, args: argparse.Namespace, dsn: str, env: dict[str, str]) -> Run:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/v1/payments"
    keyed = target.mode == "keyed"
    with_ip = args.customer_ip == "v6"
    body = _template(with_ip, args.holder_name)
    server = _serve(target.server, target.app, target.factory, port, {**env, **target.env})
    try:
        _wait_ready(url)
        if target.factory and args.routing_config and not target.configured:
            _configure_routing(base, target.key)
            target.configured = True
        _wrk(url, target.key, keyed, body, with_ip, args.connections, 3, args.threads)  # warm-up: connections, caches
        if target.factory:
            before_rows = asyncio.run(_written(dsn, target.merchant))
            before_metrics = _scrape(f"{base}/metrics")
            before_outcomes = asyncio.run(_outcomes(dsn, target.merchant))
        before_cpu = _cpu_snapshot(dsn, server.pid)
        run = _wrk(url, target.key, keyed, body, with_ip, args.connections, args.duration, args.threads)
        run.cpu, run.busiest = _cpu_delta(before_cpu, _cpu_snapshot(dsn, server.pid), server.pid)
        if target.factory:
            after_rows = asyncio.run(_written(dsn, target.merchant))
            after_metrics = _scrape(f"{base}/metrics")
            run.payments = after_rows[0] - before_rows[0]
            run.keys_stored = after_rows[1] - before_rows[1]
            after_outcomes = asyncio.run(_outcomes(dsn, target.merchant))
            run.outcomes = {
                name: count - before_outcomes.get(name, 0)
                for name, count in after_outcomes.items()
                if count != before_outcomes.get(name, 0)
            }
            delta = {name: after_metrics.get(name, 0) - before_metrics.get(name, 0) for name in after_metrics}
            batches = delta.get("switch_ledger_batch_ops_count", 0)
            if batches:
                run.batches = batches
                run.batch_ops = delta["switch_ledger_batch_ops_sum"] / batches
                run.batch_ms = 1000 * delta["switch_ledger_batch_seconds_sum"] / batches
        return run
    finally:
        server.terminate()
        server.wait(timeout=30)


def _problems(target: Target, run: Run) -> list[str]:
    """What is wrong with one run: errors, non-2xx, payments that do not match the responses."""
    found = []
    if any(run.errors.values()) or run.ok != run.requests:
        errors = " ".join(f"{name}={count}" for name, count in run.errors.items())
        found.append(
            f"{run.requests - run.ok} non-2xx (statuses {run.statuses}), socket errors: {errors}; "
            f"first non-2xx body: {run.sample}"
        )
    if run.payments is not None:
        # Requests in flight when wrk stops are completed by the server but never counted by wrk.
        if not run.ok <= run.payments <= run.ok + run.in_flight:
            found.append(
                f"{run.payments} payments written for {run.ok} 2xx responses ({run.in_flight} in flight at the stop)"
            )
        if target.mode == "keyed" and run.keys_stored != run.payments:
            found.append(f"{run.keys_stored} idempotency keys stored for {run.payments} payments")
        # Declined, in review or waiting for 3-D Secure: the provider was not called for those.
        expected = "risk_disabled" if target.env.get("SWITCH_RISK") == "off" else "approve"
        wrong = {name: count for name, count in run.outcomes.items() if name != f"captured/risk={expected}"}
        if wrong:
            found.append(f"payments not captured with risk={expected}: {wrong}")
    return found


def _median(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda run: run.rate)[len(runs) // 2]


def _report(targets: list[Target], args: argparse.Namespace) -> None:
    print(
        f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration}s (after 3 s warm-up), one worker, uvloop, "
        f"{args.rounds} interleaved round(s), median run shown"
    )
    header = (
        f"{'endpoint':<28} {'server':<8} {'median req/s':>12}  {'runs':<20} {'p50 / p99 ms':<15} "
        f"{'/ bare':>6} {'non-2xx':>7} {'payments / 2xx / in flight':>28} {'ops/batch':>9} {'ms/batch':>8}"
    )
    print(header)
    bare = {target.server: _median(target.runs).rate for target in targets if not target.factory}
    for target in targets:
        median = _median(target.runs)
        runs_text = " ".join(f"{run.rate:.0f}" for run in target.runs)
        latency = f"{median.p50_ms:.1f} / {median.p99_ms:.1f}"
        failed = sum(run.requests - run.ok + sum(run.errors.values()) for run in target.runs)
        written = "-"
        batch_ops = batch_ms = "-"
        if target.factory:
            written = f"{median.payments}/{median.ok}/{median.in_flight}"
            if median.batch_ops is not None:
                batch_ops, batch_ms = f"{median.batch_ops:.1f}", f"{median.batch_ms:.2f}"
        print(
            f"{target.name:<28} {target.server:<8} {median.rate:>12.0f}  {runs_text:<20} {latency:<15} "
            f"{median.rate / bare[target.server]:>6.1%} {failed:>7} {written:>28} {batch_ops:>9} {batch_ms:>8}"
        )
    cores = os.cpu_count() or 1
    print(
        f"\nCPU per completed request in the median run, microseconds (busy: of all {cores} cores; pg shared:"
        " WAL writer, checkpointer, background writer, autovacuum; rest: everything else on the machine)"
    )
    names = ("server", "postgres", "pg shared", "wrk", "rest")
    print(f"{'endpoint':<28} {'server':<8} " + " ".join(f"{name:>9}" for name in names) + f" {'busy':>5}")
    for target in targets:
        median = _median(target.runs)
        done = median.requests or 1
        per = " ".join(f"{1e6 * median.cpu[name] / done:>9.0f}" for name in names)
        busy = median.cpu["machine"] / (median.cpu["wall"] * cores)
        print(f"{target.name:<28} {target.server:<8} {per} {busy:>5.0%}  busiest other: {'; '.join(median.busiest)}")
    print("\nper round (payments written / wrk 2xx / in flight at the stop; keyed: idempotency keys stored):")
    for target in targets:
        if target.factory:
            rows = []
            for run in target.runs:
                extra = f", keys {run.keys_stored}" if target.mode == "keyed" else ""
                rows.append(f"{run.payments}/{run.ok}/{run.in_flight}{extra}")
            print(f"  {target.name} ({target.server}): " + "; ".join(rows))
    print("\npayments written per round, by status / risk outcome:")
    for target in targets:
        if target.factory:
            rounds = "; ".join(
                ", ".join(f"{name} {count}" for name, count in sorted(run.outcomes.items())) or "none"
                for run in target.runs
            )
            print(f"  {target.name} ({target.server}): {rounds}")
    _report_comparisons(targets)


def _report_comparisons(targets: list[Target]) -> None:
    """Each feature's cost: its profile's rate against the same run with the feature off."""
    for server in dict.fromkeys(target.server for target in targets):
        for mode in dict.fromkeys(target.mode for target in targets if target.factory):
            by_profile = {
                target.profile: target
                for target in targets
                if target.server == server and target.factory and target.mode == mode
            }
            bare = next(target for target in targets if target.server == server and not target.factory)
            for label, measured, reference, allowed in COMPARISONS:
                if measured not in by_profile or reference not in by_profile:
                    continue
                on, off = by_profile[measured].runs, by_profile[reference].runs
                # Per round: the rounds are interleaved, so a round's two runs saw similar load.
                falls = [1 - a.rate / b.rate for a, b in zip(on, off, strict=True)]
                shares = " ".join(
                    f"{a.rate / z.rate:.1%}/{b.rate / z.rate:.1%}" for a, b, z in zip(on, off, bare.runs, strict=True)
                )
                medians = 1 - _median(on).rate / _median(off).rate
                verdict = "within" if medians <= allowed else "MISSES"
                print(
                    f"\n{label}, {mode}, {server}: share of bare falls {medians:+.1%} (medians; target at most "
                    f"{allowed:.0%}: {verdict}); per round {' '.join(f'{fall:+.1%}' for fall in falls)}, "
                    f"median of rounds {sorted(falls)[len(falls) // 2]:+.1%}; shares on/off per round {shares}"
                )


def main() -> int:
    """Run the bare endpoint and the switch (keyed, unkeyed) under wrk, interleaved, and compare."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat every measurement this many times, interleaved; medians reported"
    )
    parser.add_argument(
        "--mode",
        choices=("keyed", "unkeyed", "both"),
        default="both",
        help="switch requests with a unique Idempotency-Key each, without one, or both (default)",
    )
    parser.add_argument(
        "--profiles",
        choices=("default", "routing-risk"),
        default="default",
        help="default: the switch as configured; routing-risk: smart+risk, static+risk and smart with risk off, "
        "side by side (SWITCH_ROUTING, SWITCH_RISK), each against the bare endpoint",
    )
    parser.add_argument(
        "--customer-ip",
        choices=("v6", "none"),
        default="v6",
        help="v6: a new US documentation IPv6 address per request (the IP velocity and geo rules run); "
        "none: no IP, so risk skips the IP rules",
    )
    parser.add_argument(
        "--holder-name",
        default="Ada Lovelace",
        help="cardholder name on every request, screened against the sanctions lists ('' for none)",
    )
    parser.add_argument(
        "--no-routing-config",
        dest="routing_config",
        action="store_false",
        help="leave the merchants without a routing config (the implied priority config) instead of a 20-rule one",
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
    modes = ("keyed", "unkeyed") if args.mode == "both" else (args.mode,)
    targets = []
    profiles = PROFILES if args.profiles == "routing-risk" else (("default", {}),)
    for server_name in args.server or ["uvicorn"]:
        for mode in modes:
            for profile, profile_env in profiles:
                name = f"switch ({mode})" if profile == "default" else f"switch {mode} {profile}"
                app = "switch.app:create_app_from_env"
                targets.append(Target(name, server_name, mode, app, True, env=profile_env, profile=profile))
        targets.append(Target("bare Litestar endpoint", server_name, "unkeyed", "benchmarks.bare_app:app", False))
    dsn = os.environ.get("SWITCH_DATABASE_URL")
    if not dsn:
        data_dir = tempfile.mkdtemp(prefix="switch-bench-")
        os.chmod(data_dir, 0o755)
        dsn = embedded_database_url(data_dir)
    asyncio.run(_prepare(dsn, targets))
    # A scrape token would make /metrics answer 401 to the batch-size scrape.
    env = {
        **{name: value for name, value in os.environ.items() if name != "SWITCH_METRICS_TOKEN"},
        "SWITCH_DATABASE_URL": dsn,
        "SWITCH_LOG_LEVEL": "WARNING",
        # The per-key rate limit (100/s by default) would answer 429 to nearly every request.
        "SWITCH_RATE_LIMIT_PER_S": "1000000",
        "SWITCH_RATE_LIMIT_BURST": "1000000",
        # Requests wrk abandons at the end of the warm-up still run when the measured run opens its
        # connections, so more than ``--connections`` mutations can be in flight for a moment.
        "SWITCH_MAX_INFLIGHT": os.environ.get("SWITCH_MAX_INFLIGHT") or str(4 * args.connections),
    }
    failures = []
    for round_index in range(args.rounds):
        # Rotate the order each round, so no target always runs first on a fresh database or server.
        shift = round_index % len(targets)
        for target in targets[shift:] + targets[:shift]:
            run = _measure(target, args, dsn, env)
            target.runs.append(run)
            print(f"round {round_index + 1}: {target.name} ({target.server}) {run.rate:.0f} req/s", flush=True)
            where = f"{target.name} ({target.server}), round {round_index + 1}"
            failures.extend(f"{where}: {problem}" for problem in _problems(target, run))
    _report(targets, args)
    ok, report = _verify(dsn)
    print("\nswitch ledger verify:\n" + report)
    if not ok:
        failures.append("the ledger check failed (report above)")
    if failures:
        print("\nFAILED:\n" + "\n".join(f"  - {failure}" for failure in failures), file=sys.stderr)
        return 1
    print("\nall responses 2xx, no socket errors, payments match the responses, ledger clean")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
