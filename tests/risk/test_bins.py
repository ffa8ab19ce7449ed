"""BIN table: most specific row wins, ranges, operator loads reach every table, precise CSV errors."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import asyncpg
import pytest

from switch.ledger.migrate import migrate
from switch.risk.bins import BinRow, BinTable, BinTableError, bundled_rows, parse_bins_csv, store_bins
from tests.conftest import temporary_database


@pytest.fixture(scope="module")
def table() -> BinTable:
    return BinTable()


def test_the_bundled_table_covers_every_sandbox_test_card(table):
    from adapters.sandbox import TEST_CARDS

    for number in TEST_CARDS:
        info = table.lookup(number)
        assert info is not None and info.brand == ("mastercard" if number[0] == "5" else "visa"), number
        assert info.country is not None and info.funding is not None, number


def test_an_eight_digit_row_beats_a_six_digit_row_which_beats_the_brand_range(table):
    country_card = table.lookup("4000002760000016")  # 40000027: DE credit
    six = table.lookup("4000000000000002")  # 400000: US debit
    brand_only = table.lookup("4111111111111111")  # only the one-digit Visa row
    assert (country_card.country, country_card.funding) == ("DE", "credit")
    assert (six.country, six.funding) == ("US", "debit")
    assert (brand_only.brand, brand_only.country, brand_only.funding) == ("visa", None, None)
    assert table.lookup("4000008260000000").country == "GB"


def test_empty_fields_of_the_winning_row_fall_back_to_wider_rows():
    rows = parse_bins_csv("bin_low,bin_high,brand,country\n4,,visa,\n411111,,,PL\n")
    info = BinTable(rows, bundled=False).lookup("4111111111111111")
    assert (info.brand, info.country) == ("visa", "PL")


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("5100000000000000", "mastercard"),
        ("5599999999999999", "mastercard"),
        ("2221000000000009", "mastercard"),
        ("2720999999999999", "mastercard"),
        ("3528000000000000", "jcb"),
        ("3589999999999999", "jcb"),
        ("340000000000009", "amex"),
        ("370000000000002", "amex"),
        ("6011000000000004", "discover"),
        ("6500000000000002", "discover"),
        ("6200000000000005", "unionpay"),
    ],
)
def test_range_rows_cover_both_ends(table, number, brand):
    assert table.lookup(number).brand == brand


@pytest.mark.parametrize("number", ["5000000000000009", "5600000000000000", "2220999999999999", "2721000000000000"])
def test_numbers_just_outside_a_range_are_not_in_it(table, number):
    info = table.lookup(number)
    assert info is None or info.brand != "mastercard"


def test_an_unknown_bin_is_none(table):
    assert table.lookup("9999999999999999") is None
    assert table.lookup("100000") is None


def test_a_bare_six_digit_bin_matches_only_rows_of_at_most_six_digits(table):
    # 40000027 (DE credit) is more specific than "400000": a six-digit BIN cannot tell.
    assert table.lookup("400000").funding == "debit"
    assert table.lookup("40000027").funding == "credit"
    assert table.lookup("4000002").funding == "debit"


def test_the_reported_bin_is_the_first_six_digits_only(table):
    info = table.lookup("4242 4242 4242 4242")
    assert info.bin == "424242"
    assert table.lookup("4242-4242-4242-4242").bin == "424242"


@pytest.mark.parametrize("bad", ["", "42424", "42424x4242424242", "4" * 20, "٤٢٤٢٤٢"])
def test_a_lookup_of_something_that_is_not_a_bin_is_a_value_error(table, bad):
    with pytest.raises(ValueError, match="6 to 19 digits"):
        table.lookup(bad)


def test_operator_rows_win_over_bundled_rows_of_the_same_width():
    operator = parse_bins_csv("bin_low,country,funding\n424242,GB,debit\n")
    info = BinTable(operator).lookup("4242424242424242")
    assert (info.brand, info.country, info.funding) == ("visa", "GB", "debit")


def test_the_bundled_csv_parses_and_documents_itself_as_synthetic():
    assert len(bundled_rows()) > 20
    from importlib import resources

    text = resources.files("switch.risk.data").joinpath("bins.csv").read_text("utf-8")
    assert "SYNTHETIC" in text


@pytest.mark.parametrize(
    ("csv_text", "line", "field"),
    [
        ("bin_low,country\n# comment\n424242,US\n42x242,US\n", 4, "bin_low"),
        ("bin_low,bin_high\n51,5\n", 2, "bin_high"),
        ("bin_low,bin_high\n55,51\n", 2, "bin_high"),
        ("bin_low,bin_high\n123456789,\n", 2, "bin_low"),
        ("bin_low,country\n\n424242,USA\n", 3, "country"),
        ("bin_low,funding\n424242,charge\n", 2, "funding"),
        ("bin_low,brand\n424242,vi$a\n", 2, "brand"),
        ("bin_low,contry\n424242,US\n", 1, "contry"),
        ("country\nUS\n", 1, "bin_low"),
        ("bin_low,country\n424242,US\n424242,GB\n", 3, "bin_low"),
        ("bin_low,country\n424242,US,extra\n", 2, "row"),
        ("# only a comment\n", 1, "header"),
    ],
)
def test_a_malformed_row_is_an_error_naming_its_line_and_column(csv_text, line, field):
    with pytest.raises(BinTableError) as caught:
        parse_bins_csv(csv_text)
    assert (caught.value.line, caught.value.field) == (line, field)
    assert str(caught.value).startswith(f"line {line}, {field}: ")


@pytest.fixture(scope="module")
def bins_database(server_url) -> Iterator[str]:
    with temporary_database(server_url, "switch_bins_") as url:

        async def setup() -> None:
            connection = await asyncpg.connect(url)
            try:
                await migrate(connection)
            finally:
                await connection.close()

        asyncio.run(setup())
        yield url


async def test_an_operator_load_reaches_two_tables_on_the_same_database_by_generation(bins_database):
    pool = await asyncpg.create_pool(bins_database, min_size=1, max_size=2)
    try:
        worker_a, worker_b = BinTable(), BinTable()
        assert not await worker_a.refresh(pool)  # generation 0: nothing loaded
        assert worker_a.lookup("4242424242424242").country == "US"

        rows = [
            BinRow(low="424242", high="424242", country="GB", funding="debit"),
            BinRow(low="9", high="9", brand="x"),
        ]
        async with pool.acquire() as connection:
            generation = await store_bins(connection, rows, source="acquirer.csv")
        assert generation >= 1

        async with pool.acquire() as connection:
            assert await worker_a.refresh(pool)
            assert await worker_b.refresh(connection)
        for worker in (worker_a, worker_b):
            assert worker.generation == generation
            assert worker.lookup("4242424242424242").country == "GB"
            assert worker.lookup("9999999999999999").brand == "x"
            assert worker.lookup("5555555555554444").country == "US"  # bundled rows still there
        assert not await worker_a.refresh(pool)  # unchanged generation: nothing reloaded

        # A later load replaces the operator rows whole.
        async with pool.acquire() as connection:
            await store_bins(connection, [BinRow(low="555555", high="555555", country="CA")], source="second.csv")
        assert await worker_b.refresh(pool)
        assert worker_b.lookup("4242424242424242").country == "US"
        assert worker_b.lookup("9999999999999999") is None
        assert worker_b.lookup("5555555555554444").country == "CA"
    finally:
        await pool.close()


def _switch(*args: str, database: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")}
    env["SWITCH_DATABASE_URL"] = database
    return subprocess.run(
        [sys.executable, "-m", "switch.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_switch_bins_load_then_lookup_shows_the_operator_row(bins_database, tmp_path):
    path = tmp_path / "acquirer.csv"
    path.write_text("bin_low,bin_high,brand,country,funding,issuer\n41111111,41111119,visa,PL,prepaid,Bank PL\n")
    loaded = _switch("bins", "load", str(path), database=bins_database)
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded 1 BIN ranges" in loaded.stdout
    looked = _switch("bins", "lookup", "4111111111111111", database=bins_database)
    assert looked.returncode == 0, looked.stderr
    assert "country:  PL" in looked.stdout and "funding:  prepaid" in looked.stdout
    assert "4111111111111111" not in looked.stdout  # never more than the BIN
    unknown = _switch("bins", "lookup", "999999", database=bins_database)
    assert unknown.returncode == 1
    assert "no range covers it" in unknown.stdout


def test_switch_bins_load_of_a_malformed_file_is_one_line_with_the_line_number(bins_database, tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("bin_low,country\n424242,US\n424242x,US\n")
    result = _switch("bins", "load", str(path), database=bins_database)
    assert result.returncode == 2
    assert "line 3, bin_low" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    missing = _switch("bins", "load", str(tmp_path / "nope.csv"), database=bins_database)
    assert missing.returncode == 2 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr
    bad = _switch("bins", "lookup", "42", database=bins_database)
    assert bad.returncode == 2 and "6 to 19 digits" in bad.stderr and "Traceback" not in bad.stderr
