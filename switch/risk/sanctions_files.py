"""Readers of published sanctions list files: OFAC ``sdn.csv`` + ``alt.csv``, OpenSanctions targets.

OFAC's legacy CSV files have no header row, separate records with CR or CRLF, write nulls as
``-0-``, and end with a stray control-character line; older copies are Latin-1 (cp1252), newer
ones UTF-8. OpenSanctions' ``targets.simple.csv`` has a header (``id,schema,name,aliases,...``) and
``;``-separated multi-values. Malformed rows are not skipped: a sanctions list that loads half its
entries silently is worse than one that does not load, so every reader raises
:class:`SanctionsFileError` naming the file, the line and the field.
"""

from __future__ import annotations

import csv
import io
import pathlib
import re
from collections.abc import Iterator
from typing import Literal

import msgspec

FileFormat = Literal["ofac", "opensanctions"]
OFAC_NULL = "-0-"
# OpenSanctions rows carry long free-text columns (addresses, sanctions); the default 128 KiB
# field limit of the csv module is below what real exports hold.
_FIELD_LIMIT = 16 * 1024 * 1024
_PROGRAM_SPLIT = re.compile(r"\]\s*\[|;")
_OPENSANCTIONS_KINDS = {
    "person": "individual",
    "company": "entity",
    "organization": "entity",
    "legalentity": "entity",
    "publicbody": "entity",
    "vessel": "vessel",
    "airplane": "aircraft",
}


class SanctionsEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One listed party: its id on the list, its primary name, aliases and programs."""

    entry_id: str
    name: str
    kind: str = "unknown"
    programs: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


class SanctionsFileError(ValueError):
    """A list file that cannot be read, with the file, line and field it fails at."""

    def __init__(self, source: str, line: int | None, message: str) -> None:
        """Build the error; ``line`` is 1-based, ``None`` when the whole file is at fault."""
        self.source = source
        self.line = line
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")


class ParsedList(msgspec.Struct, frozen=True, kw_only=True):
    """The entries read from one list's files, and what they were read from."""

    format: FileFormat
    entries: tuple[SanctionsEntry, ...]
    sources: tuple[str, ...]

    @property
    def alias_count(self) -> int:
        """Number of aliases over all entries."""
        return sum(len(entry.aliases) for entry in self.entries)


def decode_list_bytes(data: bytes) -> str:
    """Decode a list file: UTF-8 (with or without BOM), else cp1252, else Latin-1.

    Args:
        data: the file's bytes.

    Returns:
        The text; Latin-1 decodes any byte, so this never fails.
    """
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _read(path: pathlib.Path) -> str:
    try:
        return decode_list_bytes(path.read_bytes())
    except FileNotFoundError:
        raise SanctionsFileError(str(path), None, "no such file") from None
    except IsADirectoryError:
        raise SanctionsFileError(str(path), None, "is a directory, not a list file") from None
    except OSError as exc:
        raise SanctionsFileError(str(path), None, f"cannot read: {exc.strerror or exc}") from None


def _rows(text: str, source: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line, fields)`` for every record that is not blank or trailing control garbage."""
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    reader = csv.reader(io.StringIO(text, newline=""))
    line = 1
    try:
        for row in reader:
            # The record starts on the line after the previous record ended.
            start, line = line, reader.line_num + 1
            if not row or all(not field.strip(" \t\r\n\x00\x1a\x0c") for field in row):
                continue
            yield start, row
    except csv.Error as exc:
        raise SanctionsFileError(source, reader.line_num, f"not valid CSV: {exc}") from None


def _null(value: str) -> str:
    value = value.strip()
    return "" if value == OFAC_NULL else value


def _programs(value: str) -> tuple[str, ...]:
    # OFAC writes several programs as "SDGT] [IFSR" (from "[SDGT] [IFSR]"); some copies use ";".
    parts = (part.strip(" []") for part in _PROGRAM_SPLIT.split(_null(value)))
    return tuple(dict.fromkeys(part for part in parts if part and part != OFAC_NULL))


def parse_ofac_sdn(text: str, source: str = "sdn.csv") -> list[SanctionsEntry]:
    """Read OFAC ``sdn.csv``: ``ent_num, SDN_Name, SDN_Type, Program, Title, ...`` without header.

    Args:
        text: the decoded file.
        source: the file's name, for error messages.

    Returns:
        One entry per row, in file order (no aliases yet: see :func:`merge_ofac_alt`).

    Raises:
        SanctionsFileError: a row with fewer than 4 fields, a non-numeric or repeated
            ``ent_num``, or an empty ``SDN_Name``.
    """
    entries: list[SanctionsEntry] = []
    seen: set[str] = set()
    for line, row in _rows(text, source):
        if not entries and not seen and row[0].strip().lower() in ("ent_num", "entnum"):
            continue  # a header row added by hand; OFAC's own files have none
        if len(row) < 4:
            raise SanctionsFileError(
                source, line, f"expected at least 4 fields (ent_num, SDN_Name, SDN_Type, Program), found {len(row)}"
            )
        entry_id = row[0].strip()
        if not entry_id.isdigit():
            raise SanctionsFileError(source, line, f"ent_num must be a number, found {entry_id[:40]!r}")
        if entry_id in seen:
            raise SanctionsFileError(source, line, f"ent_num {entry_id} appears twice")
        name = " ".join(_null(row[1]).split())
        if not name:
            raise SanctionsFileError(source, line, f"SDN_Name of ent_num {entry_id} is empty")
        # OFAC leaves SDN_Type null for entities; individuals, vessels and aircraft are named.
        kind = _null(row[2]).lower() or "entity"
        seen.add(entry_id)
        entries.append(SanctionsEntry(entry_id=entry_id, name=name, kind=kind, programs=_programs(row[3])))
    return entries


def merge_ofac_alt(entries: list[SanctionsEntry], text: str, source: str = "alt.csv") -> list[SanctionsEntry]:
    """Add the aliases of OFAC ``alt.csv`` (``ent_num, alt_num, alt_type, alt_name, alt_remarks``).

    Args:
        entries: the entries read from the matching ``sdn.csv``.
        text: the decoded ``alt.csv``.
        source: the file's name, for error messages.

    Returns:
        The entries with their aliases, in the same order.

    Raises:
        SanctionsFileError: a row with fewer than 4 fields, an empty ``alt_name``, or an
            ``ent_num`` that is not in ``sdn.csv`` (the two files are from different releases).
    """
    aliases: dict[str, list[str]] = {entry.entry_id: [] for entry in entries}
    for line, row in _rows(text, source):
        if row[0].strip().lower() in ("ent_num", "entnum"):
            continue
        if len(row) < 4:
            raise SanctionsFileError(
                source, line, f"expected at least 4 fields (ent_num, alt_num, alt_type, alt_name), found {len(row)}"
            )
        entry_id = row[0].strip()
        if entry_id not in aliases:
            raise SanctionsFileError(
                source, line, f"ent_num {entry_id[:40]!r} is not in sdn.csv (are both files from one release?)"
            )
        alias = " ".join(_null(row[3]).split())
        if not alias:
            raise SanctionsFileError(source, line, f"alt_name of ent_num {entry_id} is empty")
        aliases[entry_id].append(alias)
    return [
        msgspec.structs.replace(entry, aliases=tuple(dict.fromkeys(aliases[entry.entry_id])))
        if aliases[entry.entry_id]
        else entry
        for entry in entries
    ]


def parse_opensanctions_targets(text: str, source: str = "targets.simple.csv") -> list[SanctionsEntry]:
    """Read OpenSanctions' ``targets.simple.csv`` (header row; ``id``, ``schema``, ``name``, ``aliases``...).

    Programs come from the ``program_ids`` column when the export has one. Multi-values are
    ``;``-separated.

    Args:
        text: the decoded file.
        source: the file's name, for error messages.

    Returns:
        One entry per row, in file order.

    Raises:
        SanctionsFileError: no ``id`` or ``name`` column, a row whose field count differs from
            the header's, an empty or repeated ``id``, or an empty ``name``.
    """
    rows = _rows(text, source)
    first = next(rows, None)
    if first is None:
        raise SanctionsFileError(source, None, "the file is empty")
    _, header = first
    columns = {name.strip().lower(): index for index, name in enumerate(header)}
    for required in ("id", "name"):
        if required not in columns:
            raise SanctionsFileError(source, 1, f"the header has no {required!r} column")
    entries: list[SanctionsEntry] = []
    seen: set[str] = set()

    def field(row: list[str], column: str) -> str:
        index = columns.get(column)
        return row[index].strip() if index is not None else ""

    for line, row in rows:
        if len(row) != len(header):
            raise SanctionsFileError(source, line, f"expected {len(header)} fields as in the header, found {len(row)}")
        entry_id = field(row, "id")
        if not entry_id:
            raise SanctionsFileError(source, line, "id is empty")
        if entry_id in seen:
            raise SanctionsFileError(source, line, f"id {entry_id[:60]!r} appears twice")
        name = " ".join(field(row, "name").split())
        if not name:
            raise SanctionsFileError(source, line, f"name of {entry_id[:60]!r} is empty")
        aliases = tuple(
            dict.fromkeys(
                alias for alias in (" ".join(part.split()) for part in field(row, "aliases").split(";")) if alias
            )
        )
        programs = tuple(dict.fromkeys(p.strip() for p in field(row, "program_ids").split(";") if p.strip()))
        schema = field(row, "schema")
        kind = _OPENSANCTIONS_KINDS.get(schema.lower(), schema.lower() or "unknown")
        seen.add(entry_id)
        entries.append(SanctionsEntry(entry_id=entry_id, name=name, kind=kind, programs=programs, aliases=aliases))
    return entries


def detect_format(text: str, source: str) -> Literal["ofac_sdn", "ofac_alt", "opensanctions"]:
    """Tell which kind of list file ``text`` is from its first record.

    Raises:
        SanctionsFileError: the file is empty or looks like none of them.
    """
    first = next(_rows(text, source), None)
    if first is None:
        raise SanctionsFileError(source, None, "the file is empty")
    line, row = first
    head = row[0].strip().lower()
    if head == "id" and "name" in {column.strip().lower() for column in row}:
        return "opensanctions"
    if head.isdigit() or head in ("ent_num", "entnum"):
        if len(row) == 5 and row[2].strip().lower() in ("aka", "fka", "nka", "alt_type"):
            return "ofac_alt"
        return "ofac_sdn"
    raise SanctionsFileError(
        source,
        line,
        "not a known list format: expected OFAC sdn.csv (first field a number, no header) "
        "or OpenSanctions targets.simple.csv (header starting with id)",
    )


def read_list_files(path: str | pathlib.Path, alt_path: str | pathlib.Path | None = None) -> ParsedList:
    """Read a list from disk, whatever its format.

    ``path`` is an OFAC ``sdn.csv`` (its ``alt.csv`` is read too: ``alt_path``, or the ``alt.csv``
    beside it when there is one), an OpenSanctions targets file, or a directory holding
    ``sdn.csv`` (+ ``alt.csv``) or ``targets.simple.csv``.

    Args:
        path: the list file or directory.
        alt_path: OFAC aliases file, when not beside ``sdn.csv``.

    Returns:
        The parsed list.

    Raises:
        SanctionsFileError: the file is missing, unreadable, of an unknown format, malformed
            or holds no entry.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        for candidate in ("sdn.csv", "SDN.CSV", "targets.simple.csv"):
            if (path / candidate).is_file():
                path = path / candidate
                break
        else:
            raise SanctionsFileError(str(path), None, "directory holds neither sdn.csv nor targets.simple.csv")
    text = _read(path)
    kind = detect_format(text, str(path))
    if kind == "ofac_alt":
        raise SanctionsFileError(str(path), 1, "this is an OFAC alt.csv (aliases only); load its sdn.csv instead")
    if kind == "opensanctions":
        if alt_path is not None:
            raise SanctionsFileError(
                str(alt_path), None, "an alt.csv goes with an OFAC sdn.csv, not with OpenSanctions"
            )
        entries = parse_opensanctions_targets(text, str(path))
        parsed = ParsedList(format="opensanctions", entries=tuple(entries), sources=(str(path),))
    else:
        entries = parse_ofac_sdn(text, str(path))
        sources = [str(path)]
        alt = pathlib.Path(alt_path) if alt_path is not None else _sibling_alt(path)
        if alt is not None:
            entries = merge_ofac_alt(entries, _read(alt), str(alt))
            sources.append(str(alt))
        parsed = ParsedList(format="ofac", entries=tuple(entries), sources=tuple(sources))
    if not parsed.entries:
        raise SanctionsFileError(str(path), None, "holds no entry; refusing to replace a list with an empty one")
    return parsed


def _sibling_alt(sdn: pathlib.Path) -> pathlib.Path | None:
    name = sdn.name
    lowered = name.lower()
    if "sdn" not in lowered:
        return None
    start = lowered.index("sdn")
    candidate = sdn.with_name(name[:start] + ("ALT" if name[start : start + 3] == "SDN" else "alt") + name[start + 3 :])
    return candidate if candidate.is_file() else None
