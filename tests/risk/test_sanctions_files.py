"""Readers of OFAC sdn.csv/alt.csv and OpenSanctions targets files, quirks and malformed rows."""

from __future__ import annotations

import re

import pytest

from switch.risk.sanctions_files import (
    SanctionsEntry,
    SanctionsFileError,
    decode_list_bytes,
    detect_format,
    merge_ofac_alt,
    parse_ofac_sdn,
    parse_opensanctions_targets,
    read_list_files,
)

# Shaped like OFAC's own files: no header, CRLF, every field quoted, -0- nulls, several programs as
# "A] [B", entities with a null SDN_Type, a quoted comma and quote inside a name, a Remarks field
# spanning two lines, and the trailing control-character line.
SDN = (
    '"36","KORVALESH, Ivan Petrovich","individual","SYN-TERR","-0-","-0-","-0-","-0-","-0-","-0-","-0-",'
    '"Synthetic; not a real person."\r\n'
    '"173","ZORVANTIC SHIPPING LLC","-0-","SYN-REGION1] [SYN-CYBER","-0-","-0-","-0-","-0-","-0-","-0-","-0-",'
    '"Line one\r\nline two"\r\n'
    '"306","VELKORA ""STAR""","vessel","SYN-REGION1","-0-","-0-","-0-","-0-","-0-","-0-","-0-","-0-"\r\n'
    "\x1a\r\n"
)
ALT = (
    '"36","501","aka","KORVALESCH, Ivan","-0-"\r\n'
    '"36","502","aka","Корвалеш Иван","-0-"\r\n'
    '"173","503","fka","ZORVANTIK MARITIME","-0-"\r\n'
    "\x1a"
)
TARGETS = (
    "id,schema,name,aliases,birth_date,countries,addresses,identifiers,sanctions,phones,emails,"
    "program_ids,dataset,first_seen,last_seen,last_change\n"
    "syn-1,Person,Ivan Korvalesh,Ivan Korvalesch;Иван Корвалеш,1970-01-01,xx,,,,,,SYN-TERR,"
    "Synthetic,2024-01-01,2024-02-01,2024-02-01\n"
    'syn-2,Company,"Zorvantic Shipping, LLC",,,xx,"Quay 1, Port",,,,,SYN-REGION1;SYN-CYBER,Synthetic,,,\n'
    "syn-3,Vessel,Velkora Star,,,,,,,,,,Synthetic,,,\n"
)


def test_ofac_sdn_rows_become_entries_with_programs_and_kinds():
    entries = parse_ofac_sdn(SDN)
    assert entries == [
        SanctionsEntry(entry_id="36", name="KORVALESH, Ivan Petrovich", kind="individual", programs=("SYN-TERR",)),
        SanctionsEntry(
            entry_id="173", name="ZORVANTIC SHIPPING LLC", kind="entity", programs=("SYN-REGION1", "SYN-CYBER")
        ),
        SanctionsEntry(entry_id="306", name='VELKORA "STAR"', kind="vessel", programs=("SYN-REGION1",)),
    ]


def test_ofac_alt_rows_become_aliases_of_their_entries():
    entries = merge_ofac_alt(parse_ofac_sdn(SDN), ALT)
    assert [entry.aliases for entry in entries] == [
        ("KORVALESCH, Ivan", "Корвалеш Иван"),
        ("ZORVANTIK MARITIME",),
        (),
    ]


def test_ofac_programs_separated_by_semicolons_and_a_header_row_are_tolerated():
    text = 'ent_num,SDN_Name,SDN_Type,Program\n1,"DOE, Jane",individual,A; B\n'
    assert parse_ofac_sdn(text) == [
        SanctionsEntry(entry_id="1", name="DOE, Jane", kind="individual", programs=("A", "B"))
    ]


def test_a_latin1_file_decodes_and_a_utf8_one_with_a_bom_too():
    latin1 = '"1","MÜLLER, Jörg","individual","X"\r\n'.encode("cp1252")
    assert parse_ofac_sdn(decode_list_bytes(latin1))[0].name == "MÜLLER, Jörg"
    utf8 = '\ufeff"1","MÜLLER, Jörg","individual","X"\r\n'.encode()
    assert parse_ofac_sdn(decode_list_bytes(utf8))[0].name == "MÜLLER, Jörg"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('"1","DOE, Jane","individual"\r\n', 1, "expected at least 4 fields"),
        ('"1","A","individual","X"\r\n"x2","B","individual","X"\r\n', 2, "ent_num must be a number"),
        ('"1","A","individual","X"\r\n"1","B","individual","X"\r\n', 2, "ent_num 1 appears twice"),
        ('"1","-0-","individual","X"\r\n', 1, "SDN_Name of ent_num 1 is empty"),
        # The multi-line Remarks of record 1 ends on line 2, so the bad record is on line 3.
        ('"1","A","individual","X","r","e\r\nmarks"\r\n"2","B"\r\n', 3, "expected at least 4 fields"),
    ],
)
def test_a_malformed_sdn_row_is_an_error_naming_its_line(text, line, message):
    with pytest.raises(SanctionsFileError) as caught:
        parse_ofac_sdn(text, "sdn.csv")
    assert caught.value.line == line
    assert str(caught.value).startswith(f"sdn.csv:{line}: {message}")


def test_an_alias_of_an_unknown_entry_is_an_error_naming_its_line():
    with pytest.raises(SanctionsFileError, match=r"^alt\.csv:2: ent_num '999' is not in sdn\.csv"):
        merge_ofac_alt(parse_ofac_sdn(SDN), '"36","501","aka","X","-0-"\r\n"999","502","aka","Y","-0-"\r\n')


def test_opensanctions_targets_rows_become_entries():
    entries = parse_opensanctions_targets(TARGETS)
    assert entries == [
        SanctionsEntry(
            entry_id="syn-1",
            name="Ivan Korvalesh",
            kind="individual",
            programs=("SYN-TERR",),
            aliases=("Ivan Korvalesch", "Иван Корвалеш"),
        ),
        SanctionsEntry(
            entry_id="syn-2", name="Zorvantic Shipping, LLC", kind="entity", programs=("SYN-REGION1", "SYN-CYBER")
        ),
        SanctionsEntry(entry_id="syn-3", name="Velkora Star", kind="vessel"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("id,schema,caption\nx,Person,Y\n", 1, "the header has no 'name' column"),
        ("id,schema,name\nx,Person,Y,extra\n", 2, "expected 3 fields as in the header, found 4"),
        ("id,schema,name\nx,Person,Y\n,Person,Z\n", 3, "id is empty"),
        ("id,schema,name\nx,Person,Y\nx,Person,Z\n", 3, "id 'x' appears twice"),
        ("id,schema,name\nx,Person,\n", 2, "name of 'x' is empty"),
    ],
)
def test_a_malformed_targets_row_is_an_error_naming_its_line(text, line, message):
    with pytest.raises(SanctionsFileError) as caught:
        parse_opensanctions_targets(text, "targets.simple.csv")
    assert str(caught.value) == f"targets.simple.csv:{line}: {message}"


def test_the_format_is_told_from_the_first_record():
    assert detect_format(SDN, "f") == "ofac_sdn"
    assert detect_format(ALT, "f") == "ofac_alt"
    assert detect_format(TARGETS, "f") == "opensanctions"
    with pytest.raises(SanctionsFileError, match="not a known list format"):
        detect_format("name,country\nX,Y\n", "f")


def test_reading_an_sdn_file_reads_the_alt_file_beside_it(tmp_path):
    (tmp_path / "sdn.csv").write_text(SDN, encoding="utf-8", newline="")
    (tmp_path / "alt.csv").write_text(ALT, encoding="utf-8", newline="")
    parsed = read_list_files(tmp_path / "sdn.csv")
    assert parsed.format == "ofac"
    assert parsed.sources == (str(tmp_path / "sdn.csv"), str(tmp_path / "alt.csv"))
    assert (len(parsed.entries), parsed.alias_count) == (3, 3)
    assert read_list_files(tmp_path) == parsed  # the folder works too


def test_reading_a_targets_file(tmp_path):
    (tmp_path / "targets.simple.csv").write_text(TARGETS, encoding="utf-8")
    parsed = read_list_files(tmp_path / "targets.simple.csv")
    assert (parsed.format, len(parsed.entries), parsed.alias_count) == ("opensanctions", 3, 2)


@pytest.mark.parametrize(
    ("files", "target", "message"),
    [
        ({}, "missing.csv", "missing.csv: no such file"),
        ({"alt.csv": ALT}, "alt.csv", "this is an OFAC alt.csv (aliases only)"),
        ({"empty.csv": ""}, "empty.csv", "the file is empty"),
        ({"other.csv": "a,b\n1,2\n"}, "other.csv", "not a known list format"),
        ({"sdn.csv": "\x1a\r\n"}, "sdn.csv", "the file is empty"),
        ({"x": ""}, ".", "directory holds neither sdn.csv nor targets.simple.csv"),
    ],
)
def test_a_file_that_is_not_a_list_is_a_clear_error(tmp_path, files, target, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(SanctionsFileError, match=re.escape(message)):
        read_list_files(tmp_path / target)
