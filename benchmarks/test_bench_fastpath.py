"""Microbenchmarks of fastpath, compiled vs pure Python, one pair per hot operation.

Run: ``.venv/bin/pytest benchmarks/test_bench_fastpath.py --benchmark-only`` (after
``python setup.py build_ext --inplace``). Results: ``benchmarks/RESULTS.md``. Targets (issue 4):
the compiled ranked quote and velocity update are at least 10x the pure-Python ones.
"""

import importlib
from types import ModuleType

import pytest

from fastpath._types import FeeSchedule


def _load(module: str, implementation: str) -> ModuleType:
    try:
        return importlib.import_module(f"fastpath._{module}_{implementation}")
    except ImportError as exc:
        pytest.skip(f"fastpath._{module}_{implementation} is not built: {exc}")


# Eight candidates shaped like real price lists (card acquirers, a wallet, a CN collector, SEPA).
PROVIDERS = [
    FeeSchedule(percent_centibps=29_000, fixed_minor=30, cross_border_centibps=15_000, fx_centibps=10_000),
    FeeSchedule(percent_centibps=14_000, fixed_minor=25, cross_border_centibps=18_500, fx_centibps=20_000),
    FeeSchedule(percent_centibps=34_900, fixed_minor=49, cross_border_centibps=15_000, fx_centibps=30_000),
    FeeSchedule(percent_centibps=6_000, fixed_minor=11, cross_border_centibps=9_000, fx_centibps=6_000),
    FeeSchedule(percent_centibps=10_000, fixed_minor=0, cross_border_centibps=0, fx_centibps=3_500, max_fee=5_000),
    FeeSchedule(percent_centibps=25_000, fixed_minor=20, cross_border_centibps=10_000, fx_centibps=5_000),
    FeeSchedule(percent_centibps=0, fixed_minor=35, cross_border_centibps=0, fx_centibps=0, min_fee=35),
    FeeSchedule(percent_centibps=19_950, fixed_minor=15, cross_border_centibps=12_500, fx_centibps=8_000),
]
RATES = {"USD": "1.1172", "JPY": "175.68", "GBP": "0.83380", "KWD": "0.3427"}
KEYS = ["card:tok_4242", "email:shopper@example.com", "ip:203.0.113.9", "device:7f3a9c", "merchant:m_123"]
DISTINCT = [None, "tok_4242", "tok_4242", "tok_4242", "tok_4242"]


def _fee_quote(benchmark, implementation: str) -> None:
    fees = _load("fees", implementation)
    schedule = PROVIDERS[0]
    assert benchmark(fees.quote_fee, schedule, 12_345, True, True) == 697


def _fee_rank_8(benchmark, implementation: str) -> None:
    fees = _load("fees", implementation)
    table = fees.FeeTable(PROVIDERS)
    ranked = benchmark(table.rank, 12_345, True, False)
    assert [index for index, _ in ranked] == [6, 4, 3, 7, 1, 5, 0, 2]


def _fx_convert(benchmark, implementation: str) -> None:
    fx = _load("fx", implementation)
    table = fx.RateTable(RATES)
    assert benchmark(table.convert, 12_345, "USD", "JPY", 150).amount_out == 19_704


def _velocity_5x3(benchmark, implementation: str) -> None:
    velocity = _load("velocity", implementation)
    counters = velocity.VelocityCounters(windows=(60, 3600, 86400))
    snapshots = benchmark(counters.add_many, KEYS, 1_999, DISTINCT)
    assert len(snapshots) == 5 and all(len(snapshot) == 3 for snapshot in snapshots)


@pytest.mark.benchmark(group="fee_quote")
def test_bench_fee_quote_c(benchmark):
    _fee_quote(benchmark, "c")


@pytest.mark.benchmark(group="fee_quote")
def test_bench_fee_quote_py(benchmark):
    _fee_quote(benchmark, "py")


@pytest.mark.benchmark(group="fee_rank_8")
def test_bench_fee_rank_8_c(benchmark):
    _fee_rank_8(benchmark, "c")


@pytest.mark.benchmark(group="fee_rank_8")
def test_bench_fee_rank_8_py(benchmark):
    _fee_rank_8(benchmark, "py")


@pytest.mark.benchmark(group="fx_convert")
def test_bench_fx_convert_c(benchmark):
    _fx_convert(benchmark, "c")


@pytest.mark.benchmark(group="fx_convert")
def test_bench_fx_convert_py(benchmark):
    _fx_convert(benchmark, "py")


@pytest.mark.benchmark(group="velocity_5x3")
def test_bench_velocity_5x3_c(benchmark):
    _velocity_5x3(benchmark, "c")


@pytest.mark.benchmark(group="velocity_5x3")
def test_bench_velocity_5x3_py(benchmark):
    _velocity_5x3(benchmark, "py")
