"""Reading a raw CSV as its contract declares it: explicit dtypes, multi-threaded, with errors
that name the file, the row, the column and the fix."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from cd4ml.contract import Contract, Table
from cd4ml.io import UserError

log = logging.getLogger(__name__)

_BLOCK = 16 << 20
_BOM = "\ufeff"


def read_header(path: Path) -> list[str]:
    """The header row of a CSV, with clear errors for missing, empty or non-UTF-8 files."""
    if not path.exists():
        raise UserError(f"{path}: file not found; run `make data` or put the real file there")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: file is empty (0 bytes); regenerate it with `make data`")
    with path.open("rb") as fh:
        line = fh.readline()
    try:
        text = line.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: header row is not UTF-8 ({err.reason})") from None
    return next(csv.reader([text]))


def check_columns(path: Path, header: list[str], expected: list[str]) -> None:
    """Fail with the missing / renamed / unexpected / misordered columns named."""
    if header == expected:
        return
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    detail = f"\nexpected exactly these columns, in this order: {expected}\nfound: {header}"
    renamed = [(h, e) for h, e in zip(header, expected, strict=False) if h != e]
    if (
        missing
        and len(header) == len(expected)
        and all(h in extra and e in missing for h, e in renamed)
    ):
        found, want = renamed[0]
        more = f" (and {len(renamed) - 1} more)" if len(renamed) > 1 else ""
        raise UserError(
            f"{path}: column {want!r} is missing, {found!r} is in its place{more}: renamed? "
            f"rename it back to {want!r}{detail}"
        )
    if missing:
        hint = f", unexpected column(s) {extra}" if extra else ""
        raise UserError(f"{path}: missing column(s) {missing}{hint}{detail}")
    if extra:
        raise UserError(f"{path}: unexpected column(s) {extra}; remove them{detail}")
    raise UserError(f"{path}: columns are in the wrong order{detail}")


def read_table(
    path: Path, table: Table, columns: list[str] | None = None, dictionary: bool = False
) -> pa.Table:
    """Read one raw table (only `columns`, when given) with the dtypes of its contract; only
    empty fields are missing. With `dictionary` its text columns come dictionary-encoded."""
    types = table.types
    header = read_header(path)
    check_columns(path, header, list(types))
    options = pacsv.ConvertOptions(
        column_types=_dictionary_text(types) if dictionary else types,
        include_columns=columns or [],
        # Real data holds the literal string 'null' (KKBox's source_system_tab): only an empty
        # field means missing, quoted ("", as pyarrow's and pandas' quote-all writers put it)
        # or not, as the release bundle reads an empty field.
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    read = pacsv.ReadOptions(
        use_threads=True, block_size=_BLOCK, skip_rows=1, column_names=list(types)
    )
    try:
        table = pacsv.read_csv(path, read_options=read, convert_options=options)
    except pa.ArrowInvalid as err:
        raise UserError(f"{path}: {_explain(path, str(err), list(types))}\n{err}") from None
    if table.num_rows == 0:
        raise UserError(f"{path}: has a header but no rows; regenerate it with `make data`")
    if all(pa.types.is_string(kind) for kind in types.values()):
        # A repeated header fails any typed column's conversion; text columns take it as data.
        _check_repeated_header(path, table)
    log.info("read %s: %d rows x %d columns", path, table.num_rows, table.num_columns)
    return table


def _dictionary_text(types: dict[str, pa.DataType]) -> dict[str, pa.DataType]:
    """The dtypes with text read as dictionaries: a play table repeats the same ids and
    contexts, and each block of the file is then held once per distinct value (train.csv at
    full scale: 1020 MiB as text, 330 MiB so; parsed faster too)."""
    text = pa.dictionary(pa.int32(), pa.string())
    return {name: text if pa.types.is_string(kind) else kind for name, kind in types.items()}


def _explain(path: Path, message: str, columns: list[str]) -> str:
    """Turn a pyarrow CSV error into one line naming the row (1 = first data row) and column.

    pyarrow does not report row numbers, so on this error path the file is scanned once more.
    """
    first = message.splitlines()[0]
    if m := re.search(
        r"CSV column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'", first
    ):
        col, kind, value = int(m[1]), m[2], m[3]
        if value == columns[col]:
            header = _find_row(path, lambda fields: _is_header(fields, columns))
            if header != "?":
                return _repeated_header(header)
        row = _find_row(path, lambda fields: len(fields) > col and fields[col] == value)
        return f"row {row}, column {columns[col]!r}: {value!r} is not a valid {kind}"
    if "UTF8" in first:
        row = _find_bad_utf8(path)
        return f"row {row}: bytes that are not UTF-8; re-save the file as UTF-8"
    if m := re.search(r"Expected (\d+) columns, got (\d+)", first):
        want = int(m[1])
        row = _find_row(path, lambda fields: len(fields) != want)
        return f"row {row}: expected {want} fields, got {m[2]} (truncated or malformed line)"
    return first


def _check_repeated_header(path: Path, table: pa.Table) -> None:
    """Fail when a data row is the header line again (two CSVs concatenated)."""
    names = table.column_names
    # One vectorised pass over the first column; the few candidate rows are compared in full.
    column = table[names[0]]
    first = pc.or_(pc.equal(column, names[0]), pc.equal(column, _BOM + names[0]))
    for index in pc.indices_nonzero(first).to_pylist():
        if _is_header(list(table.slice(index, 1).to_pylist()[0].values()), names):
            raise UserError(f"{path}: {_repeated_header(index + 1)}")


def _repeated_header(row: int | str) -> str:
    return f"row {row} repeats the header line (concatenated files?); remove it"


def _is_header(fields: list[str | None], columns: list[str]) -> bool:
    # A file concatenated with its byte order mark keeps it in front of the repeated header.
    head = fields[0].removeprefix(_BOM) if fields and fields[0] else None
    return [head, *fields[1:]] == columns


def _find_row(path: Path, bad: Callable[[list[str]], bool]) -> int | str:
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for number, fields in enumerate(reader, start=1):
            if bad(fields):
                return number
    return "?"


def _find_bad_utf8(path: Path) -> int | str:
    with path.open("rb") as fh:
        for number, line in enumerate(fh):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return "?"


def read_tables(data: Path, contract: Contract) -> dict[str, pa.Table]:
    """Every raw table of the contract in the folder, the optional ones where they exist; the
    tables the contract marks `dictionary` with their text dictionary-encoded (a third of the
    memory: validate holds every table at once)."""
    names = contract.required + [n for n in contract.optional if (data / n).exists()]
    return {
        name: read_table(
            data / name, contract.tables[name], dictionary=contract.tables[name].dictionary
        )
        for name in names
    }
