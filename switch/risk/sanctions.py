"""Sanctions screening: an in-memory token index of list names, a fuzzy scorer, and its reload.

Lists live in PostgreSQL (``sanctions_entries``, written by ``switch sanctions load`` through
:func:`store_list`, one transaction per list that also bumps ``sanctions_generation``). Every
worker holds a :class:`SanctionsScreener`; a background task calls :meth:`SanctionsScreener.refresh`
about once a second, which costs one one-row query and rebuilds the index only when the generation
moved, so a new list is live everywhere without a restart. :meth:`SanctionsScreener.screen` is
synchronous and touches no I/O.

Zero-config: while no list was loaded into the database, a screener built with
``bundled_when_empty=True`` (the default) screens against the bundled synthetic list
(``switch/risk/data/sanctions_synthetic_*.csv``: invented names, no real person), so the demo has
something to hit. Production deployments load real lists, after which the bundled one is never
used; pass ``bundled_when_empty=False`` to screen against nothing rather than synthetic names.

Scoring (0-100): names are normalized (:mod:`switch.risk.names`), tokens of the query are paired
with the listed name's tokens greedily by similarity (Indel distance, so word order does not
matter and a typo costs only its own characters), and the score is the share of characters that
agree. When one name has exactly one token more and every token of the other pairs up closely
(a missing middle name: the listed surname and first given name must be among the paired), the
score over the paired tokens counts too, less :data:`MISSING_TOKEN_PENALTY`.
Candidates come from an index of tokens and their one-character deletions (SymSpell-style, so a
one-edit typo still finds its token); a multi-token query only scores names sharing its tokens
(all but one, from three tokens on), found through its rarest tokens, so a 20,000-entry list
scores a handful of names.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Literal

import asyncpg
import msgspec
from rapidfuzz import fuzz, process
from rapidfuzz.distance import Indel

from switch.risk.names import name_tokens
from switch.risk.sanctions_files import SanctionsEntry, merge_ofac_alt, parse_ofac_sdn
from switch.risk.types import SanctionsMatch

# Chosen with benchmarks/sanctions_quality.py --sweep: at 88, recall on 2,544 perturbed names of the
# bundled list is 0.999 with no false positive on 3,000 common names (0.996 and 0.3% against a
# generated 20,000-entry list); at 92 typo recall falls to 0.95, at 84 nothing is gained.
DEFAULT_THRESHOLD = 88.0
# A listed name with one more token than the query (a middle name left out) scores 96 at best.
MISSING_TOKEN_PENALTY = 4.0
# When a token is left out, the paired ones must each be close (one substitution or less, 70%
# alike), else "Liu Sandra" would pass for "Ali Sandra Remegeish".
_SUBSET_MAX_DISTANCE = 2
_SUBSET_MIN_SIMILARITY = 0.7
BUNDLED_LIST = "synthetic"
_LIST_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
# Tokens shorter than this are indexed as they are: the deletions of a 2-letter token would
# make every 1-letter key a candidate.
_MIN_DELETE_LEN = 3

ScreeningSource = Literal["bundled", "database", "none"]


class _Record(msgspec.Struct, frozen=True, array_like=True):
    """One screenable name (a primary name or an alias) of one entry, normalized once.

    ``anchors`` are the positions of the tokens a query must pair even when it leaves one token
    out: the surname and the first given name ("SURNAME, Given Middle"), else the first and last
    token, so a missing middle name still matches and a missing surname does not.
    """

    entry: int
    text: str
    tokens: tuple[str, ...]
    token_set: frozenset[str]
    length: int
    joined: str
    sorted_joined: str
    anchors: frozenset[int]


def _anchors(text: str, tokens: tuple[str, ...]) -> frozenset[int]:
    surname, comma, given = text.partition(",")
    if comma:
        before, after = name_tokens(surname), name_tokens(given)
        if before + after == tokens:
            return frozenset(range(len(before) + (1 if after else 0)))
    return frozenset({0, len(tokens) - 1})


def _deletions(token: str) -> list[str]:
    return [token[:i] + token[i + 1 :] for i in range(len(token))]


class SanctionsIndex:
    """An immutable, in-memory index of the names of one or more lists."""

    def __init__(self, lists: Mapping[str, Sequence[SanctionsEntry]]) -> None:
        """Normalize and index every name and alias of ``lists`` (list name → entries)."""
        self._entries: list[tuple[str, str, tuple[str, ...]]] = []
        self._records: list[_Record] = []
        postings: dict[str, list[int]] = {}
        for list_name, entries in lists.items():
            for entry in entries:
                entry_index = len(self._entries)
                self._entries.append((entry.entry_id, list_name, entry.programs))
                for text in dict.fromkeys((entry.name, *entry.aliases)):
                    tokens = name_tokens(text)
                    if not tokens:
                        continue
                    record_id = len(self._records)
                    self._records.append(
                        _Record(
                            entry=entry_index,
                            text=text,
                            tokens=tokens,
                            token_set=frozenset(tokens),
                            length=sum(map(len, tokens)),
                            joined=" ".join(tokens),
                            sorted_joined=" ".join(sorted(tokens)),
                            anchors=_anchors(text, tokens),
                        )
                    )
                    for token in dict.fromkeys(tokens):
                        postings.setdefault(token, []).append(record_id)
        keys: dict[str, list[str]] = {}
        for token in postings:
            keys.setdefault(token, []).append(token)
            if len(token) >= _MIN_DELETE_LEN:
                for key in dict.fromkeys(_deletions(token)):
                    keys.setdefault(key, []).append(token)
        self._postings: dict[str, tuple[int, ...]] = {token: tuple(ids) for token, ids in postings.items()}
        self._keys: dict[str, tuple[str, ...]] = {key: tuple(tokens) for key, tokens in keys.items()}

    @property
    def entry_count(self) -> int:
        """Number of listed entries."""
        return len(self._entries)

    @property
    def name_count(self) -> int:
        """Number of screenable names (primary names and aliases)."""
        return len(self._records)

    def _holders(self, tokens: set[str]) -> set[int]:
        """The records holding any of ``tokens``."""
        return set().union(*(self._postings[token] for token in tokens))

    def _near(self, token: str, records: set[int], count: int, query_length: int, floor: float) -> set[int]:
        """Of ``records`` (missing ``token``), those whose score could still reach ``floor``.

        A name with one token fewer than the query may leave ``token`` out. Any other pays at
        least the distance from ``token`` to its nearest token: paired, that is the pair's cost;
        unpaired, one of the name's tokens is unpaired too and the two lengths are at least their
        distance. The threshold allows a cost of ``(1 - floor) * (query + name length)`` at most,
        with the name at most ``2 / floor - 1`` times the query's length.
        """
        kept: set[int] = set()
        check: list[int] = []
        for record_id in records:
            (kept.add if len(self._records[record_id].tokens) == count - 1 else check.append)(record_id)
        if not check:
            return kept
        allowed = int((1.0 - floor) * query_length * 2.0 / floor)
        listed = set().union(*(self._records[record_id].token_set for record_id in check))
        found = process.extract(token, listed, scorer=Indel.distance, score_cutoff=allowed, limit=None)
        near = {choice for choice, _, _ in found}
        return kept.union(record_id for record_id in check if not near.isdisjoint(self._records[record_id].token_set))

    def _expand(self, token: str) -> set[str]:
        """Listed tokens within about one edit of ``token`` (a superset; the scorer decides)."""
        found: set[str] = set(self._keys.get(token, ()))
        if len(token) >= _MIN_DELETE_LEN:
            for key in _deletions(token):
                found.update(self._keys.get(key, ()))
        return found

    def screen(self, name: str, threshold: float) -> list[SanctionsMatch]:
        """Return the entries whose best name scores at least ``threshold`` against ``name``.

        Args:
            name: the name to screen (cardholder, customer, counterparty), any script.
            threshold: the lowest score (0-100) reported.

        Returns:
            One match per entry, best score first.
        """
        query = tuple(dict.fromkeys(name_tokens(name)))
        if not query or not self._records:
            return []
        floor = threshold / 100.0
        query_length = sum(map(len, query))
        expansions = [self._expand(token) for token in query]
        holders = [self._holders(found) for found in expansions]
        count = len(query)
        need = count if count <= 2 else count - 1
        # Two query tokens near the same listed token ("William Williams") can pair only once.
        overlapping = any(
            not expansions[i].isdisjoint(expansions[j]) for i in range(count) for j in range(i + 1, count)
        )
        # Every query token paired closely (within one edit) means sharing it with the name. A
        # name that can reach the threshold shares all of them, or (from three tokens on) all
        # but one; those missing one are kept only if they hold a token near the missing one.
        candidates = set.intersection(*holders)
        if count >= 3:
            for missing in range(count):
                others = set.intersection(*(holders[i] for i in range(count) if i != missing)) - candidates
                if others:
                    candidates |= self._near(query[missing], others, count, query_length, floor)
        query_joined = " ".join(query)
        query_sorted = " ".join(sorted(query))
        best: dict[int, tuple[float, _Record]] = {}
        for record_id in candidates:
            record = self._records[record_id]
            # With one token more on either side the left-out score applies; otherwise every
            # character counts and the lengths alone can rule the name out.
            if abs(count - len(record.tokens)) != 1 and (
                2 * min(query_length, record.length) < floor * (query_length + record.length)
            ):
                continue
            if overlapping and len(set().union(*(found & record.token_set for found in expansions))) < need:
                continue
            score = _score(query, query_length, query_joined, query_sorted, record)
            if score >= threshold:
                previous = best.get(record.entry)
                if previous is None or score > previous[0]:
                    best[record.entry] = (score, record)
        matches = []
        for entry_index, (score, record) in best.items():
            entry_id, list_name, programs = self._entries[entry_index]
            matches.append(
                SanctionsMatch(
                    name=name,
                    matched=record.text,
                    entry_id=entry_id,
                    list_name=list_name,
                    score=round(score, 1),
                    programs=programs,
                )
            )
        matches.sort(key=lambda match: (-match.score, match.list_name, match.entry_id))
        return matches


def _score(query: tuple[str, ...], query_length: int, joined: str, sorted_joined: str, record: _Record) -> float:
    """Score (0-100) how well the query tokens and a listed name's tokens agree."""
    tokens = record.tokens
    pairs: list[tuple[float, int, int, int, int]] = []  # (dissimilarity, distance, length, i, j)
    for i, left in enumerate(query):
        for j, right in enumerate(tokens):
            distance = Indel.distance(left, right)
            total = len(left) + len(right)
            if 2 * distance < total:  # under half the characters differ: worth pairing
                pairs.append((distance / total, distance, total, i, j))
    pairs.sort()
    used_query: set[int] = set()
    used_listed: set[int] = set()
    paired_distance = paired_length = 0
    strong = True  # every pair about one edit apart: what a name with a token left out may differ by
    for dissimilarity, distance, total, i, j in pairs:
        if i in used_query or j in used_listed:
            continue
        used_query.add(i)
        used_listed.add(j)
        paired_distance += distance
        paired_length += total
        strong = strong and distance <= _SUBSET_MAX_DISTANCE and dissimilarity <= 1.0 - _SUBSET_MIN_SIMILARITY
    whole = query_length + record.length
    score = 100.0 * (1.0 - (paired_distance + whole - paired_length) / whole)
    paired = len(used_query)
    # One token left out of either name (a middle name), the others all close: score what pairs.
    left_out = (
        paired >= 2
        and strong
        and abs(len(query) - len(tokens)) == 1
        and paired == min(len(query), len(tokens))
        and (paired == len(tokens) or record.anchors <= used_listed)
    )
    if left_out:
        score = max(score, 100.0 * (1.0 - paired_distance / paired_length) - MISSING_TOKEN_PENALTY)
    if len(query) == len(tokens):
        return score
    # Whole-string comparisons catch what token pairing cannot: two words written as one. With
    # as many tokens on both sides they would only add a sorted-order artefact.
    return max(score, fuzz.ratio(joined, record.joined), fuzz.ratio(sorted_joined, record.sorted_joined))


@functools.cache
def bundled_entries() -> tuple[SanctionsEntry, ...]:
    """The bundled synthetic list (invented names, no real person), for tests and the demo."""
    data = resources.files("switch.risk.data")
    sdn = data.joinpath("sanctions_synthetic_sdn.csv").read_text(encoding="utf-8")
    alt = data.joinpath("sanctions_synthetic_alt.csv").read_text(encoding="utf-8")
    entries = parse_ofac_sdn(sdn, "sanctions_synthetic_sdn.csv")
    return tuple(merge_ofac_alt(entries, alt, "sanctions_synthetic_alt.csv"))


@functools.cache
def bundled_index() -> SanctionsIndex:
    """The index of the bundled synthetic list, built once per process."""
    return SanctionsIndex({BUNDLED_LIST: bundled_entries()})


class SanctionsScreener:
    """What a worker screens names with: the loaded lists' index, swapped whole on reload."""

    def __init__(self, *, threshold: float = DEFAULT_THRESHOLD, bundled_when_empty: bool = True) -> None:
        """Build a screener.

        Args:
            threshold: the default lowest score (0-100) that counts as a hit.
            bundled_when_empty: screen against the bundled synthetic list while the database
                holds no list (zero-config demo). Until the first :meth:`refresh` the screener
                uses the bundled list when this is set, else nothing.
        """
        if not 0.0 < threshold <= 100.0:
            raise ValueError(f"threshold must be in (0, 100], got {threshold}")
        self.threshold = threshold
        self.bundled_when_empty = bundled_when_empty
        self._generation: int | None = None
        self._lock = asyncio.Lock()
        if bundled_when_empty:
            self._index, self._source = bundled_index(), "bundled"
        else:
            self._index, self._source = SanctionsIndex({}), "none"

    @property
    def generation(self) -> int | None:
        """The database generation the index reflects; ``None`` before the first refresh."""
        return self._generation

    @property
    def source(self) -> ScreeningSource:
        """``database`` (loaded lists), ``bundled`` (the synthetic list) or ``none``."""
        return self._source  # type: ignore[return-value]

    @property
    def index(self) -> SanctionsIndex:
        """The index in use."""
        return self._index

    async def refresh(self, pool: asyncpg.Pool | asyncpg.Connection) -> bool:
        """Reload the lists when their generation changed since the last call.

        One small query when nothing changed. On a change the entries are read in one snapshot
        and the index is rebuilt off the event loop, then swapped in whole; screening goes on
        against the previous index meanwhile, and keeps it when this raises.

        Args:
            pool: the database (pool or connection) holding the migrated schema.

        Returns:
            True when a new index was swapped in.

        Raises:
            asyncpg.PostgresError, OSError: the database could not be read.
        """
        async with self._lock:
            if isinstance(pool, asyncpg.Pool):
                async with pool.acquire() as connection:
                    return await self._refresh(connection)
            return await self._refresh(pool)

    async def _refresh(self, connection: asyncpg.Connection) -> bool:
        generation = await connection.fetchval("SELECT generation FROM sanctions_generation")
        if generation == self._generation:
            return False
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            generation = await connection.fetchval("SELECT generation FROM sanctions_generation")
            rows = await connection.fetch(
                "SELECT list_name, entry_id, kind, name, aliases, programs FROM sanctions_entries"
                " ORDER BY list_name, entry_id"
            )
        lists: dict[str, list[SanctionsEntry]] = {}
        for row in rows:
            lists.setdefault(row["list_name"], []).append(
                SanctionsEntry(
                    entry_id=row["entry_id"],
                    name=row["name"],
                    kind=row["kind"],
                    aliases=tuple(row["aliases"]),
                    programs=tuple(row["programs"]),
                )
            )
        if lists:
            self._index = await asyncio.to_thread(SanctionsIndex, lists)
            self._source = "database"
        elif self.bundled_when_empty:
            self._index, self._source = bundled_index(), "bundled"
        else:
            self._index, self._source = SanctionsIndex({}), "none"
        self._generation = generation
        return True

    def screen(self, name: str, *, threshold: float | None = None) -> list[SanctionsMatch]:
        """Screen one name against the lists in memory (no I/O).

        Args:
            name: the name to screen.
            threshold: overrides the screener's threshold for this call.

        Returns:
            The matched entries, best first; empty when none reaches the threshold.
        """
        return self._index.screen(name, self.threshold if threshold is None else threshold)

    def screen_names(self, names: Iterable[str], *, threshold: float | None = None) -> list[SanctionsMatch]:
        """Screen several names (cardholder, customer, counterparty); every match, best first."""
        index = self._index  # one index for all names, even if a refresh swaps it meanwhile
        limit = self.threshold if threshold is None else threshold
        found = [match for name in dict.fromkeys(names) if name for match in index.screen(name, limit)]
        found.sort(key=lambda match: -match.score)
        return found


class LoadedList(msgspec.Struct, frozen=True, kw_only=True):
    """One list as stored in the database."""

    list_name: str
    format: str
    source: str
    entries: int
    aliases: int
    loaded_at: int
    generation: int


class SanctionsStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What the database holds: the current generation and each loaded list."""

    generation: int
    lists: tuple[LoadedList, ...]


def check_list_name(list_name: str) -> str:
    """Return ``list_name`` when it is a valid list name (lowercase letters, digits, ``_.-``).

    Raises:
        ValueError: it is not.
    """
    if not _LIST_NAME.match(list_name):
        raise ValueError(
            f"list name {list_name!r} is invalid: use 1-63 lowercase letters, digits, '_', '.' or '-'"
            " starting with a letter or digit"
        )
    return list_name


async def store_list(
    connection: asyncpg.Connection,
    list_name: str,
    entries: Sequence[SanctionsEntry],
    *,
    format: str,
    source: str,
    now: int | None = None,
) -> int:
    """Replace one list's entries in one transaction and bump the generation every worker polls.

    Args:
        connection: a connection to the migrated database.
        list_name: the list to replace (other lists are kept).
        entries: its new entries (at least one).
        format: ``ofac`` or ``opensanctions``, recorded for ``switch sanctions status``.
        source: where the entries were read from (file paths).
        now: the load time (whole seconds since the epoch); the current time when omitted.

    Returns:
        The new generation.

    Raises:
        ValueError: an invalid list name, no entries, or an entry id that appears twice.
    """
    check_list_name(list_name)
    if not entries:
        raise ValueError("no entries: refusing to replace a list with an empty one")
    ids = [entry.entry_id for entry in entries]
    if len(set(ids)) != len(ids):
        raise ValueError("an entry id appears twice")
    loaded_at = int(time.time()) if now is None else now
    async with connection.transaction():
        # The row lock on the generation serializes concurrent loads.
        generation = await connection.fetchval(
            "UPDATE sanctions_generation SET generation = generation + 1 RETURNING generation"
        )
        await connection.execute("DELETE FROM sanctions_entries WHERE list_name = $1", list_name)
        await connection.copy_records_to_table(
            "sanctions_entries",
            columns=("list_name", "entry_id", "kind", "name", "aliases", "programs"),
            records=[
                (list_name, entry.entry_id, entry.kind, entry.name, list(entry.aliases), list(entry.programs))
                for entry in entries
            ],
        )
        await connection.execute(
            "INSERT INTO sanctions_lists (list_name, format, source, entries, aliases, loaded_at, generation)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (list_name) DO UPDATE SET format = EXCLUDED.format, source = EXCLUDED.source,"
            " entries = EXCLUDED.entries, aliases = EXCLUDED.aliases, loaded_at = EXCLUDED.loaded_at,"
            " generation = EXCLUDED.generation",
            list_name,
            format,
            source,
            len(entries),
            sum(len(entry.aliases) for entry in entries),
            loaded_at,
            generation,
        )
    return int(generation)


async def sanctions_status(connection: asyncpg.Connection) -> SanctionsStatus:
    """Read the current generation and the loaded lists."""
    generation = await connection.fetchval("SELECT generation FROM sanctions_generation")
    rows = await connection.fetch(
        "SELECT list_name, format, source, entries, aliases, loaded_at, generation FROM sanctions_lists"
        " ORDER BY list_name"
    )
    return SanctionsStatus(
        generation=int(generation),
        lists=tuple(
            LoadedList(
                list_name=row["list_name"],
                format=row["format"],
                source=row["source"],
                entries=row["entries"],
                aliases=row["aliases"],
                loaded_at=row["loaded_at"],
                generation=row["generation"],
            )
            for row in rows
        ),
    )
