"""Sanctions screening quality at the default threshold: recall on perturbed names, false positives.

The measurement is ``benchmarks/sanctions_quality.py`` (run it to print the figures and a
threshold sweep); here it runs on fixed seeds so the figures are reproducible.
"""

from __future__ import annotations

import pytest

from benchmarks.sanctions_quality import common_names, generate_list, listed_from_entries, measure
from switch.risk.names import name_tokens
from switch.risk.sanctions import DEFAULT_THRESHOLD, bundled_entries


@pytest.mark.parametrize("source", ["bundled", "generated-2000"])
def test_recall_and_false_positives_at_the_default_threshold(source):
    listed = listed_from_entries(bundled_entries()) if source == "bundled" else generate_list(2000, seed=5)
    quality = measure(listed, DEFAULT_THRESHOLD, seed=3, negatives=3000)
    assert quality.recall_cases >= 6 * len(listed)
    assert set(quality.recall_by_kind) >= {"typo", "swapped_order", "missing_middle", "case"}
    assert quality.recall >= 0.95, quality.missed[:10]
    assert quality.negatives == 3000
    assert quality.false_positive_rate <= 0.01, quality.false_positives[:10]


def test_the_common_names_are_not_on_the_synthetic_list():
    listed = {name_tokens(text) for entry in bundled_entries() for text in (entry.name, *entry.aliases)}
    assert not any(name_tokens(name) in listed for name in common_names(3000, seed=4))


def test_a_perturbation_the_screener_cannot_survive_lowers_recall():
    # The measurement can fail: with a threshold of 100 only exact spellings count.
    quality = measure(listed_from_entries(bundled_entries()), 100.0, seed=3, negatives=100)
    assert quality.recall < 0.95
    assert quality.recall_by_kind["typo"] < 0.5
