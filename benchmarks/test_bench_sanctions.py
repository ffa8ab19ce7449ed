"""Sanctions screening speed: one name against a generated list of 20,000 entries.

Run: ``.venv/bin/python -m pytest benchmarks/test_bench_sanctions.py --benchmark-only`` (from the
repository root). Target (issue 10): under 1 ms per name. The list comes from the generator of
``benchmarks/sanctions_quality.py`` (invented names, about a third with an alias; ~26,000
screenable names); the queries are a listed name with a typo, a common name that is not listed,
an entity name made of the list's most frequent words, and a sweep of 3,000 mixed names.
"""

import random
import time

import pytest

from benchmarks.sanctions_quality import common_names, generate_list, perturbations
from switch.risk.sanctions import DEFAULT_THRESHOLD, SanctionsIndex

ENTRIES = 20_000
LIMIT_S = 0.001


@pytest.fixture(scope="module")
def listed():
    return generate_list(ENTRIES, seed=3)


@pytest.fixture(scope="module")
def index(listed):
    built = SanctionsIndex({"bench": [item.entry for item in listed]})
    assert built.entry_count == ENTRIES
    return built


def _check(benchmark) -> None:
    if benchmark.stats is not None:  # absent with --benchmark-disable
        assert benchmark.stats.stats.mean < LIMIT_S


@pytest.mark.benchmark(group="sanctions_screen_20k")
def test_bench_screen_listed_name_with_typo(benchmark, listed, index):
    target = next(item for item in listed if item.surname and len(item.given) == 2)
    query = target.natural[:-2] + target.natural[-1]  # one deletion in the surname
    matches = benchmark(index.screen, query, DEFAULT_THRESHOLD)
    assert target.entry.entry_id in [match.entry_id for match in matches]
    _check(benchmark)


@pytest.mark.benchmark(group="sanctions_screen_20k")
def test_bench_screen_common_unlisted_name(benchmark, index):
    benchmark(index.screen, "Maria Elena Garcia", DEFAULT_THRESHOLD)
    _check(benchmark)


@pytest.mark.benchmark(group="sanctions_screen_20k")
def test_bench_screen_entity_of_frequent_words(benchmark, listed, index):
    target = next(item for item in listed if "IMPORT EXPORT" in item.natural)
    matches = benchmark(index.screen, target.natural, DEFAULT_THRESHOLD)
    assert matches[0].entry_id == target.entry.entry_id
    _check(benchmark)


def test_a_sweep_of_mixed_names_stays_under_a_millisecond_each(listed, index):
    rng = random.Random(9)
    queries = [text for item in rng.sample(listed, 300) for _, text in perturbations(item, rng)]
    queries += common_names(3000 - len(queries), seed=21)
    timings = []
    for query in queries:
        started = time.perf_counter()
        index.screen(query, DEFAULT_THRESHOLD)
        timings.append(time.perf_counter() - started)
    timings.sort()
    mean = sum(timings) / len(timings)
    p99 = timings[int(len(timings) * 0.99)]
    print(
        f"\n{len(timings)} names vs {ENTRIES} entries: mean {mean * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us,"
        f" max {timings[-1] * 1e6:.0f} us"
    )
    assert mean < LIMIT_S
    assert p99 < LIMIT_S
