"""Sanctions screening: matches and non-matches, thresholds, reload without restart, the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from switch.cli import main
from switch.ledger.migrate import migrate
from switch.risk.sanctions import (
    BUNDLED_LIST,
    DEFAULT_THRESHOLD,
    SanctionsIndex,
    SanctionsScreener,
    bundled_entries,
    sanctions_status,
    store_list,
)
from switch.risk.sanctions_files import SanctionsEntry
from tests.conftest import temporary_database

KORVALESH = SanctionsEntry(
    entry_id="36",
    name="KORVALESH, Ivan Petrovich",
    kind="individual",
    programs=("SYN-TERR",),
    aliases=("KORVALESCH, Ivan", "Корвалеш Иван Петрович"),
)
DUNBRECHT = SanctionsEntry(entry_id="37", name="DÚNBRECHT, María Elena", kind="individual", programs=("SYN-NARC",))
ZORVANTIC = SanctionsEntry(entry_id="173", name="ZORVANTIC SHIPPING LLC", kind="entity", programs=("SYN-REGION1",))
VELKORA = SanctionsEntry(entry_id="306", name="VELKORA STAR", kind="vessel", programs=("SYN-REGION1",))
INDEX = SanctionsIndex({"test": [KORVALESH, DUNBRECHT, ZORVANTIC, VELKORA]})


def _hits(name: str, threshold: float = DEFAULT_THRESHOLD) -> list[str]:
    return [match.entry_id for match in INDEX.screen(name, threshold)]


@pytest.mark.parametrize(
    ("name", "entry_id"),
    [
        ("Ivan Petrovich Korvalesh", "36"),  # as typed: given names first
        ("KORVALESH, Ivan Petrovich", "36"),  # as listed
        ("Petrovich Ivan Korvalesh", "36"),  # any word order
        ("Ivan Petrovich Korvalesj", "36"),  # one substitution
        ("Ivan Petrovich Korvlesh", "36"),  # one deletion
        ("Ivan Petrovich Korvaelsh", "36"),  # one transposition
        ("Ivn Petrovich Korvalesh", "36"),  # typo in a short token
        ("Ivan Korvalesh", "36"),  # middle name left out
        ("Ivan Korvalesch", "36"),  # an alias
        ("Корвалеш Иван", "36"),  # Cyrillic, against the Latin names
        ("Mr. Ivan KORVALESH", "36"),  # honorific
        ("maria elena dunbrecht", "37"),  # accents missing in the query
        ("Mária Eléna Dúnbrécht", "37"),  # more accents than the list
        ("Zorvantic Shipping Ltd.", "173"),  # another legal form
        ("ZORVANTIC SHIPPING", "173"),  # none
        ("Velkora Star", "306"),
    ],
)
def test_a_listed_name_written_another_way_matches_its_entry(name, entry_id):
    assert _hits(name) == [entry_id]


@pytest.mark.parametrize(
    "name",
    [
        "Ivan Petrov",  # a common name sharing the listed given name
        "Korvalesh",  # the surname alone
        "Ivan Petrovich",  # the given names without the surname
        "Maria Elena Garcia",
        "Zorvantic",  # one word of a company name
        "Shipping LLC",
        "Velkora Trading",
        "John Smith",
        "",
        "Dr.",
    ],
)
def test_an_unlisted_name_matches_nothing(name):
    assert _hits(name) == []


def test_a_match_carries_the_entry_the_alias_the_programs_and_a_score():
    (match,) = INDEX.screen("Ivan Korvalesch", DEFAULT_THRESHOLD)
    assert (match.name, match.matched, match.entry_id, match.list_name, match.programs) == (
        "Ivan Korvalesch",
        "KORVALESCH, Ivan",
        "36",
        "test",
        ("SYN-TERR",),
    )
    assert match.score == 100.0
    (typo,) = INDEX.screen("Ivan Petrovich Korvalesj", DEFAULT_THRESHOLD)
    assert DEFAULT_THRESHOLD <= typo.score < 100.0


def test_the_threshold_decides_what_counts_as_a_match():
    score = INDEX.screen("Ivan Korvalezs", 0.1)[0].score
    assert _hits("Ivan Korvalezs", threshold=score) == ["36"]
    assert _hits("Ivan Korvalezs", threshold=score + 0.1) == []


def test_matches_are_ordered_best_first_one_per_entry():
    twins = SanctionsIndex(
        {
            "a": [SanctionsEntry(entry_id="1", name="Ivan Korvalesh", aliases=("Ivan Korvalesh", "Ivan Korvalesj"))],
            "b": [SanctionsEntry(entry_id="2", name="Ivan Korvalesj")],
        }
    )
    matches = twins.screen("Ivan Korvalesh", DEFAULT_THRESHOLD)
    assert [(match.list_name, match.entry_id, match.matched) for match in matches] == [
        ("a", "1", "Ivan Korvalesh"),
        ("b", "2", "Ivan Korvalesj"),
    ]
    assert matches[0].score > matches[1].score


def test_a_default_screener_uses_the_bundled_synthetic_list_and_can_be_told_not_to():
    screener = SanctionsScreener()
    assert screener.source == "bundled"
    assert [m.list_name for m in screener.screen("Ivan Petrovich Korvalesh")] == [BUNDLED_LIST]
    strict = SanctionsScreener(bundled_when_empty=False)
    assert strict.source == "none"
    assert strict.screen("Ivan Petrovich Korvalesh") == []


def test_the_bundled_list_is_synthetic():
    entries = bundled_entries()
    assert len(entries) >= 300
    assert all(entry.programs and all(p.startswith("SYN-") for p in entry.programs) for entry in entries)


def test_screen_names_screens_every_name_with_one_index():
    screener = SanctionsScreener(threshold=90)
    found = screener.screen_names(["Jane Doe", "Ivan Korvalesh", "", "ZORVANTIC SHIPPING LLC"])
    assert {match.entry_id for match in found} == {"10001", "10004"}


def test_a_threshold_outside_the_score_range_is_refused():
    with pytest.raises(ValueError, match="threshold"):
        SanctionsScreener(threshold=0)


@pytest.fixture
def sanctions_database(server_url) -> Iterator[str]:
    with temporary_database(server_url, "switch_sanctions_") as url:

        async def setup() -> None:
            connection = await asyncpg.connect(url)
            try:
                await migrate(connection)
            finally:
                await connection.close()

        asyncio.run(setup())
        yield url


OFAC_SDN = (
    '"9001","BRAVOLESK, Anton Mirek","individual","SYN-CYBER","-0-","-0-","-0-","-0-","-0-","-0-","-0-","-0-"\r\n'
    '"9002","QUELVORA METALS LTD","-0-","SYN-REGION2","-0-","-0-","-0-","-0-","-0-","-0-","-0-","-0-"\r\n'
)
OFAC_ALT = '"9001","1","aka","BRAVOLESCK, Anton","-0-"\r\n'


async def test_a_list_loaded_by_the_cli_reaches_two_running_screeners_without_restart(
    sanctions_database, tmp_path, monkeypatch
):
    (tmp_path / "sdn.csv").write_text(OFAC_SDN, encoding="utf-8", newline="")
    (tmp_path / "alt.csv").write_text(OFAC_ALT, encoding="utf-8", newline="")
    monkeypatch.setenv("SWITCH_DATABASE_URL", sanctions_database)
    pool = await asyncpg.create_pool(sanctions_database, min_size=1, max_size=2)
    try:
        worker_a, worker_b = SanctionsScreener(), SanctionsScreener()
        assert await worker_a.refresh(pool) and await worker_b.refresh(pool)
        assert (worker_a.source, worker_a.generation) == ("bundled", 0)  # nothing loaded yet
        assert not await worker_a.refresh(pool)  # same generation: nothing reloaded
        assert worker_a.screen("Anton Bravolesk") == []

        code = await asyncio.to_thread(main, ["sanctions", "load", str(tmp_path / "sdn.csv")])
        assert code == 0

        for worker in (worker_a, worker_b):
            assert await worker.refresh(pool)
            assert (worker.source, worker.generation) == ("database", 1)
            (match,) = worker.screen("Anton Bravolesck")
            assert (match.list_name, match.entry_id, match.matched) == ("ofac_sdn", "9001", "BRAVOLESCK, Anton")
            assert worker.screen("Quelvora Metals Limited")[0].entry_id == "9002"
            assert worker.screen("Ivan Petrovich Korvalesh") == []  # the bundled list is no longer used
    finally:
        await pool.close()


async def test_a_load_replaces_only_its_own_list_and_bumps_the_generation(sanctions_database):
    connection = await asyncpg.connect(sanctions_database)
    try:
        screener = SanctionsScreener(bundled_when_empty=False)
        assert await screener.refresh(connection)
        assert screener.source == "none"
        first = await store_list(connection, "alpha", [KORVALESH], format="ofac", source="a.csv", now=1_700_000_000)
        second = await store_list(connection, "beta", [ZORVANTIC], format="ofac", source="b.csv")
        third = await store_list(connection, "alpha", [DUNBRECHT], format="opensanctions", source="c.csv")
        assert (first, second, third) == (1, 2, 3)
        assert await screener.refresh(connection)
        assert screener.generation == 3
        assert screener.screen("Ivan Korvalesh") == []  # replaced
        assert [m.entry_id for m in screener.screen("Maria Elena Dunbrecht")] == ["37"]
        assert [m.entry_id for m in screener.screen("Zorvantic Shipping")] == ["173"]  # kept
        status = await sanctions_status(connection)
        assert status.generation == 3
        assert [(item.list_name, item.format, item.entries, item.source) for item in status.lists] == [
            ("alpha", "opensanctions", 1, "c.csv"),
            ("beta", "ofac", 1, "b.csv"),
        ]
        with pytest.raises(ValueError, match="empty"):
            await store_list(connection, "alpha", [], format="ofac", source="d.csv")
        with pytest.raises(ValueError, match="list name"):
            await store_list(connection, "Bad Name", [KORVALESH], format="ofac", source="d.csv")
        assert (await sanctions_status(connection)).generation == 3  # refused loads changed nothing
    finally:
        await connection.close()


def _run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exit:
        code = int(exit.code)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_screen_and_status_print_matches_and_lists(sanctions_database, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SWITCH_DATABASE_URL", sanctions_database)
    code, out, _ = _run_cli(["sanctions", "status"], capsys)
    assert code == 0 and "no list loaded" in out and "bundled synthetic list" in out
    code, out, _ = _run_cli(["sanctions", "screen", "Ivan Petrovich Korvalesh"], capsys)
    assert code == 0 and "bundled synthetic list" in out
    assert "100.0  synthetic        10001          SYN-TERR                 KORVALESH, Ivan Petrovich" in out

    (tmp_path / "targets.simple.csv").write_text(
        "id,schema,name,aliases,program_ids\nsyn-9,Person,Anton Bravolesk,Anton Bravolesck,SYN-CYBER\n",
        encoding="utf-8",
    )
    code, out, _ = _run_cli(["sanctions", "load", str(tmp_path / "targets.simple.csv"), "--list", "os"], capsys)
    assert code == 0 and "loaded 1 entries (1 aliases) into list os" in out and "generation 1" in out
    code, out, _ = _run_cli(["sanctions", "screen", "BRAVOLESK Anton"], capsys)
    assert code == 0 and "syn-9" in out and "SYN-CYBER" in out
    code, out, _ = _run_cli(["sanctions", "screen", "Ivan Korvalesh"], capsys)
    assert code == 0 and "no match at threshold 88" in out
    code, out, _ = _run_cli(["sanctions", "status"], capsys)
    assert code == 0 and "generation 1" in out and "opensanctions" in out


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ({}, ["missing.csv"], "missing.csv: no such file"),
        ({"x.csv": "name,country\nA,B\n"}, ["x.csv"], "not a known list format"),
        ({"sdn.csv": '"1","A"\r\n'}, ["sdn.csv"], "sdn.csv:1: expected at least 4 fields"),
        ({"sdn.csv": OFAC_SDN}, ["sdn.csv", "--list", "Not Valid"], "list name 'Not Valid' is invalid"),
    ],
)
def test_cli_load_errors_are_one_line_and_exit_2(
    sanctions_database, tmp_path, monkeypatch, capsys, files, args, message
):
    monkeypatch.setenv("SWITCH_DATABASE_URL", sanctions_database)
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8", newline="")
    code, out, err = _run_cli(["sanctions", "load", *args], capsys)
    assert code == 2
    assert err.startswith("switch: error: ") and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert out == ""


def test_cli_screen_refuses_a_threshold_out_of_range(sanctions_database, monkeypatch, capsys):
    monkeypatch.setenv("SWITCH_DATABASE_URL", sanctions_database)
    code, _, err = _run_cli(["sanctions", "screen", "Ivan", "--threshold", "150"], capsys)
    assert code == 2 and "--threshold must be in (0, 100], got 150" in err
