"""Sanctions screening quality: recall on perturbed listed names, false positives on common names.

Run: ``.venv/bin/python benchmarks/sanctions_quality.py`` (the bundled synthetic list, the
default threshold) or with ``--sweep`` (several thresholds), ``--entries 20000`` (a generated list
of that size instead of the bundled one), ``--seed N``. ``tests/risk/test_sanctions_quality.py``
asserts the figures at the default threshold on a fixed seed.

Recall: every listed individual and entity is written as a user would type it and then perturbed
one way at a time (one typo; word order swapped; the middle name left out; accents added or
removed; upper/lower case); a case counts as found when the screener returns that entry.
False positives: a few thousand names built from common first and last names of many countries
(none of them on the synthetic list, whose surnames and company words are invented) and the share
that matches anything.

The synthetic list is made by the same generator (``--write-synthetic DIR`` writes it in OFAC
``sdn.csv`` / ``alt.csv`` format): invented surnames and company names, fictional programs
(``SYN-*``), no real person or organization.
"""

from __future__ import annotations

import argparse
import csv
import io
import pathlib
import random
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence

import msgspec

from switch.risk.names import name_tokens
from switch.risk.sanctions import DEFAULT_THRESHOLD, SanctionsIndex, bundled_entries
from switch.risk.sanctions_files import SanctionsEntry

FIRST_NAMES = (
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William", "Elizabeth",
    "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
    "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty", "Mark", "Sandra", "Steven", "Ashley",
    "Mohammed", "Ahmed", "Fatima", "Ali", "Omar", "Aisha", "Hassan", "Layla", "Yusuf", "Khalid",
    "Jose", "Maria", "Juan", "Ana", "Carlos", "Lucia", "Luis", "Carmen", "Miguel", "Sofia",
    "Ivan", "Olga", "Dmitri", "Natalia", "Sergei", "Elena", "Alexei", "Irina", "Nikolai", "Tatiana",
    "Hans", "Anna", "Klaus", "Ursula", "Pierre", "Marie", "Jean", "Camille", "Giuseppe", "Giulia",
    "Wei", "Li", "Jun", "Mei", "Hiroshi", "Yuki", "Kenji", "Sakura", "Min", "Ji",
    "Priya", "Raj", "Arjun", "Ananya", "Mehmet", "Ayse", "Jan", "Agnieszka", "Joao", "Beatriz",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
    "Muller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Rossi", "Russo", "Ferrari",
    "Kim", "Park", "Wang", "Zhang", "Liu", "Chen", "Singh", "Kumar", "Patel", "Khan",
    "Hassan", "Ibrahim", "Mahmoud", "Haddad", "Ivanov", "Smirnov", "Kuznetsov", "Popov", "Silva", "Santos",
    "Oliveira", "Dubois", "Moreau", "Laurent", "Tanaka", "Suzuki", "Sato", "Yilmaz", "Kaya", "Nowak",
    "Kowalski", "Jansen", "De Vries", "Andersson", "Nielsen", "Murphy", "Kelly", "O'Brien", "Costa", "Novak",
)  # fmt: skip
_ONSETS = ("b", "d", "k", "l", "m", "n", "r", "s", "t", "v", "z", "g", "h", "br", "dr", "kr", "tr", "st",
           "sh", "zh", "kh", "ch", "vr", "gl", "p", "f", "j", "y")  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ei", "ou", "ya")
_CODAS = ("", "", "", "n", "r", "l", "s", "sh", "k", "t", "v", "m", "z", "sk", "nd", "rt", "ld", "sh", "ch")
_TRADES = ("TRADING", "SHIPPING", "PETROCHEMICAL", "HOLDING", "LOGISTICS", "INDUSTRIAL", "MARITIME",
           "IMPORT EXPORT", "ENGINEERING", "METALS", "TECHNOLOGIES", "INVESTMENT", "ENERGY", "GROUP")  # fmt: skip
_LEGAL = ("LLC", "LTD", "FZE", "GMBH", "JSC", "S.A.", "CO., LTD.", "LIMITED", "INC.", "PJSC", "")
_VESSEL_WORDS = ("STAR", "GLORY", "SPIRIT", "PRIDE", "VOYAGER", "DAWN", "HORIZON", "I", "II", "III")
_PROGRAMS = ("SYN-TERR", "SYN-PROLIF", "SYN-NARC", "SYN-CYBER", "SYN-REGION1", "SYN-REGION2", "SYN-HR")
_ACCENTS = {"a": "áàâä", "e": "éèêë", "i": "íî", "o": "óôö", "u": "úüû", "n": "ñ", "c": "ç", "s": "š", "z": "ž"}
_CYRILLIC = tuple(
    zip(
        "shch zh kh ts ch sh ya yu a b v g d e z i y k l m n o p r s t u f h j c w x q".split(),  # noqa: SIM905
        "щ ж х ц ч ш я ю а б в г д е з и й к л м н о п р с т у ф х дж к в кс к".split(),  # noqa: RUF001, SIM905
        strict=True,
    )
)
_COMMON = frozenset(token for name in FIRST_NAMES + LAST_NAMES for token in name_tokens(name))


class Listed(msgspec.Struct, frozen=True, kw_only=True):
    """A generated entry and how a user would type its name (natural order, given names first)."""

    entry: SanctionsEntry
    natural: str
    given: tuple[str, ...] = ()
    surname: str = ""


def invented_word(rng: random.Random, syllables: int | None = None) -> str:
    """An invented, name-like word that is not one of the common names."""
    while True:
        count = syllables or rng.choice((2, 2, 3, 3, 3))
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(count - 1))
        word += rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
        if len(word) >= 5 and word not in _COMMON:
            return word.capitalize()


def _accented(word: str, rng: random.Random, count: int = 1) -> str:
    positions = [i for i, ch in enumerate(word) if ch.lower() in _ACCENTS]
    chars = list(word)
    for i in rng.sample(positions, min(count, len(positions))):
        accent = rng.choice(_ACCENTS[chars[i].lower()])
        chars[i] = accent.upper() if chars[i].isupper() else accent
    return "".join(chars)


def _strip_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def _cyrillic(text: str) -> str:
    out, lowered, i = [], text.lower(), 0
    while i < len(lowered):
        for latin, cyr in _CYRILLIC:
            if lowered.startswith(latin, i):
                out.append(cyr)
                i += len(latin)
                break
        else:
            out.append(lowered[i])
            i += 1
    return "".join(out).title()


def _spelling_variant(word: str, rng: random.Random) -> str:
    swaps = [("k", "q"), ("sh", "sch"), ("v", "w"), ("ou", "u"), ("y", "i"), ("i", "y"), ("ai", "ay"), ("ch", "tch")]
    rng.shuffle(swaps)
    for old, new in swaps:
        if old in word.lower():
            return word.lower().replace(old, new, 1).capitalize()
    return word + "a"


def generate_list(count: int, seed: int = 7, first_id: int = 10_001) -> list[Listed]:
    """Generate ``count`` synthetic entries: about 70% individuals, 22% entities, 8% vessels."""
    rng = random.Random(seed)
    listed: list[Listed] = []
    used: set[str] = set()
    while len(listed) < count:
        entry_id = str(first_id + len(listed))
        programs = tuple(rng.sample(_PROGRAMS, rng.choice((1, 1, 1, 2))))
        roll = rng.random()
        aliases: list[str] = []
        if roll < 0.70:
            given = [rng.choice(FIRST_NAMES)]
            if rng.random() < 0.5:
                given.append(rng.choice(FIRST_NAMES) if rng.random() < 0.6 else invented_word(rng, 2))
            surname = invented_word(rng)
            if rng.random() < 0.1:
                surname = _accented(surname, rng)
            if rng.random() < 0.1:
                surname = f"Al-{surname}"
            natural = " ".join((*given, surname))
            if natural.lower() in used:
                continue
            name = f"{surname.upper()}, {' '.join(given)}"
            if rng.random() < 0.30:
                aliases.append(f"{_spelling_variant(surname, rng).upper()}, {' '.join(given)}")
            if rng.random() < 0.05:
                aliases.append(_cyrillic(natural))
            entry = SanctionsEntry(
                entry_id=entry_id, name=name, kind="individual", programs=programs, aliases=tuple(aliases)
            )
            listed.append(Listed(entry=entry, natural=natural, given=tuple(given), surname=surname))
        elif roll < 0.92:
            words = [invented_word(rng).upper()]
            if rng.random() < 0.3:
                words.append(invented_word(rng, 2).upper())
            words.append(rng.choice(_TRADES))
            legal = rng.choice(_LEGAL)
            name = " ".join((*words, legal)) if legal else " ".join(words)
            if name.lower() in used:
                continue
            if rng.random() < 0.25:
                aliases.append(" ".join((_spelling_variant(words[0], rng).upper(), *words[1:])))
            entry = SanctionsEntry(
                entry_id=entry_id, name=name, kind="entity", programs=programs, aliases=tuple(aliases)
            )
            listed.append(Listed(entry=entry, natural=name))
        else:
            name = f"{invented_word(rng).upper()} {rng.choice(_VESSEL_WORDS)}"
            if name.lower() in used:
                continue
            entry = SanctionsEntry(entry_id=entry_id, name=name, kind="vessel", programs=programs)
            listed.append(Listed(entry=entry, natural=name))
        used.add(listed[-1].natural.lower())
    return listed


def listed_from_entries(entries: Sequence[SanctionsEntry]) -> list[Listed]:
    """Recover the natural spelling of OFAC-style names ("SURNAME, Given Middle")."""
    listed = []
    for entry in entries:
        if entry.kind == "individual" and "," in entry.name:
            surname, _, given = entry.name.partition(",")
            given_names = tuple(given.split())
            surname = surname.strip().title()
            listed.append(
                Listed(entry=entry, natural=" ".join((*given_names, surname)), given=given_names, surname=surname)
            )
        else:
            listed.append(Listed(entry=entry, natural=entry.name))
    return listed


# Fixed entries at the top of the bundled list, for the README demo and tests to name.
DEMO_ENTRIES = (
    SanctionsEntry(
        entry_id="10001",
        name="KORVALESH, Ivan Petrovich",
        kind="individual",
        programs=("SYN-TERR",),
        aliases=("KORVALESCH, Ivan", "Корвалеш Иван Петрович"),
    ),
    SanctionsEntry(
        entry_id="10002", name="DÚNBRECHT, María Elena", kind="individual", programs=("SYN-NARC", "SYN-HR")
    ),
    SanctionsEntry(
        entry_id="10003", name="AL-TAMSURI, Yusuf Karim", kind="individual", programs=("SYN-PROLIF",),
        aliases=("TAMSOURI, Youssef",),
    ),
    SanctionsEntry(
        entry_id="10004", name="ZORVANTIC SHIPPING LLC", kind="entity", programs=("SYN-REGION1",),
        aliases=("ZORVANTIK MARITIME",),
    ),
    SanctionsEntry(entry_id="10005", name="VELKORA STAR", kind="vessel", programs=("SYN-REGION1",)),
)  # fmt: skip


def _typo(text: str, rng: random.Random) -> str:
    positions = [i for i, ch in enumerate(text) if ch.isalpha()]
    i = rng.choice(positions)
    letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
    kind = rng.choice(("substitute", "insert", "delete", "transpose"))
    if kind == "substitute":
        return text[:i] + letter + text[i + 1 :]
    if kind == "insert":
        return text[:i] + letter + text[i:]
    if kind == "delete":
        return text[:i] + text[i + 1 :]
    j = i + 1 if i + 1 < len(text) and text[i + 1].isalpha() else i - 1
    first, second = sorted((i, j))
    return text[:first] + text[second] + text[first] + text[second + 1 :]


def perturbations(item: Listed, rng: random.Random) -> list[tuple[str, str]]:
    """The ``(kind, text)`` variants of one listed name, one perturbation each."""
    natural = item.natural
    variants = [("as_typed", natural), ("typo", _typo(natural, rng)), ("typo", _typo(natural, rng))]
    words = natural.split()
    if item.surname:
        variants.append(("swapped_order", f"{item.surname} {' '.join(item.given)}"))
        if len(item.given) >= 2:
            variants.append(("missing_middle", f"{item.given[0]} {item.surname}"))
    elif len(words) >= 2:
        swapped = words[:]
        a, b = rng.sample(range(len(words)), 2)
        swapped[a], swapped[b] = swapped[b], swapped[a]
        variants.append(("swapped_order", " ".join(swapped)))
    stripped = _strip_accents(natural)
    if stripped != natural:
        variants.append(("accents_removed", stripped))
    else:
        variants.append(("accents_added", _accented(natural, rng, 2)))
    variants.append(("case", rng.choice((natural.upper(), natural.lower(), natural.swapcase()))))
    return variants


def common_names(count: int, seed: int = 11) -> list[str]:
    """``count`` distinct names made of common first and last names (some with a middle name or title)."""
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < count:
        parts = [rng.choice(FIRST_NAMES)]
        if rng.random() < 0.25:
            parts.append(rng.choice(FIRST_NAMES))
        parts.append(rng.choice(LAST_NAMES))
        if rng.random() < 0.05:
            parts.insert(0, rng.choice(("Mr", "Mrs", "Dr", "Ms")))
        if rng.random() < 0.3:
            parts = [parts[-1], *parts[:-1]]  # written surname first
        names.add(" ".join(parts))
    return sorted(names)


class Quality(msgspec.Struct, frozen=True, kw_only=True):
    """Recall and false-positive figures at one threshold."""

    threshold: float
    entries: int
    recall_cases: int
    recall: float
    recall_by_kind: dict[str, float]
    missed: tuple[tuple[str, str], ...]
    negatives: int
    false_positive_rate: float
    false_positives: tuple[tuple[str, str, float], ...]


def measure(
    listed: Sequence[Listed], threshold: float = DEFAULT_THRESHOLD, seed: int = 3, negatives: int = 3000
) -> Quality:
    """Screen perturbed listed names and common names; return recall and false-positive rate."""
    index = SanctionsIndex({"quality": [item.entry for item in listed]})
    rng = random.Random(seed)
    found: Counter[str] = Counter()
    total: Counter[str] = Counter()
    missed: list[tuple[str, str]] = []
    for item in listed:
        for kind, text in perturbations(item, rng):
            total[kind] += 1
            if any(match.entry_id == item.entry.entry_id for match in index.screen(text, threshold)):
                found[kind] += 1
            else:
                missed.append((text, item.entry.name))
    cases = sum(total.values())
    hits: list[tuple[str, str, float]] = []
    names = common_names(negatives, seed=seed + 1)
    for name in names:
        matches = index.screen(name, threshold)
        if matches:
            hits.append((name, matches[0].matched, matches[0].score))
    return Quality(
        threshold=threshold,
        entries=len(listed),
        recall_cases=cases,
        recall=sum(found.values()) / cases,
        recall_by_kind={kind: found[kind] / total[kind] for kind in sorted(total)},
        missed=tuple(missed),
        negatives=len(names),
        false_positive_rate=len(hits) / len(names),
        false_positives=tuple(hits),
    )


def write_synthetic(directory: pathlib.Path, listed: Sequence[Listed]) -> None:
    """Write ``sanctions_synthetic_sdn.csv`` and ``sanctions_synthetic_alt.csv`` in OFAC's layout."""
    sdn, alt = io.StringIO(), io.StringIO()
    sdn_writer = csv.writer(sdn, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    alt_writer = csv.writer(alt, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    alt_num = 50_001
    for item in listed:
        entry = item.entry
        kind = "-0-" if entry.kind == "entity" else entry.kind
        remarks = "Synthetic test entry; not a real person or organization."
        row = [entry.entry_id, entry.name, kind, "] [".join(entry.programs), "-0-", "-0-", "-0-", "-0-", "-0-"]
        sdn_writer.writerow([*row, "-0-", "-0-", remarks])
        for alias in entry.aliases:
            alt_writer.writerow([entry.entry_id, str(alt_num), "aka", alias, "-0-"])
            alt_num += 1
    (directory / "sanctions_synthetic_sdn.csv").write_text(sdn.getvalue(), encoding="utf-8", newline="")
    (directory / "sanctions_synthetic_alt.csv").write_text(alt.getvalue(), encoding="utf-8", newline="")


def _report(quality: Quality, show: int) -> None:
    print(
        f"threshold {quality.threshold:5.1f}: recall {quality.recall:.4f} ({quality.recall_cases} perturbed names"
        f" of {quality.entries} entries), false positives {quality.false_positive_rate:.4f}"
        f" ({len(quality.false_positives)} of {quality.negatives} common names)"
    )
    print("  recall by perturbation: " + ", ".join(f"{k} {v:.3f}" for k, v in quality.recall_by_kind.items()))
    for text, listed in quality.missed[:show]:
        print(f"  missed: {text!r} (listed as {listed!r})")
    for name, matched, score in quality.false_positives[:show]:
        print(f"  false positive: {name!r} matched {matched!r} at {score}")


def main(argv: Sequence[str] | None = None) -> int:
    """Print recall and false-positive figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--sweep", action="store_true", help="report thresholds 80 to 95")
    parser.add_argument("--entries", type=int, help="screen against a generated list of this size")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--negatives", type=int, default=3000)
    parser.add_argument("--show", type=int, default=5, help="misses and false positives to print")
    parser.add_argument("--write-synthetic", type=pathlib.Path, metavar="DIR", help="write the bundled list files")
    args = parser.parse_args(argv)
    if args.write_synthetic:
        demo = listed_from_entries(DEMO_ENTRIES)
        write_synthetic(args.write_synthetic, [*demo, *generate_list(395, seed=20_261, first_id=10_101)])
        print(f"wrote the synthetic list to {args.write_synthetic}")
        return 0
    if args.entries:
        listed = generate_list(args.entries, seed=args.seed)
        print(f"generated list: {args.entries} entries")
    else:
        listed = listed_from_entries(bundled_entries())
        print(f"bundled synthetic list: {len(listed)} entries")
    thresholds = [80.0, 82.0, 84.0, 86.0, 88.0, 90.0, 92.0, 95.0] if args.sweep else [args.threshold]
    for threshold in thresholds:
        started = time.perf_counter()
        _report(measure(listed, threshold, seed=args.seed, negatives=args.negatives), args.show)
        print(f"  ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
