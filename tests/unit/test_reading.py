"""cd4ml.reading: reading raw CSVs with their contract's dtypes, and errors that name the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest

from cd4ml.contract import Column, Contract, Table
from cd4ml.io import UserError
from cd4ml.reading import check_columns, read_header, read_table, read_tables
from kkbox import tables
from kkbox.tables import CONTRACT


def test_renamed_column_is_named_as_such():
    with pytest.raises(UserError) as err:
        check_columns(Path("songs.csv"), ["song_id", "length"], ["song_id", "song_length"])
    first = str(err.value).splitlines()[0]
    assert first == (
        "songs.csv: column 'song_length' is missing, 'length' is in its place: renamed? "
        "rename it back to 'song_length'"
    )


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "header", "row"),
    [
        (
            tables.SONGS,
            "song_id,song_length,genre_ids,artist_name,composer,lyricist,language",
            "s{i},1000,465,a,c,l,52.0",
        ),
        (tables.SONG_EXTRA, "song_id,name,isrc", "s{i},name {i},TW{i:08d}"),
        (
            tables.TRAIN,
            "msno,song_id,source_system_tab,source_screen_name,source_type,target",
            "m{i},s{i},radio,Radio,radio,1",
        ),
    ],
)
def test_repeated_header_line_names_its_row(tmp_path, name, header, row):
    rows = [row.format(i=i) for i in range(1, 200)]
    path = _write(tmp_path / name, [header, *rows[:119], header, *rows[119:]])
    with pytest.raises(UserError) as err:
        read_table(path, CONTRACT.tables[name])
    first = str(err.value).splitlines()[0]
    assert first == f"{path}: row 120 repeats the header line (concatenated files?); remove it"
    ok = _write(tmp_path / "ok.csv", [header, *rows])
    assert read_table(ok, CONTRACT.tables[name]).num_rows == 199


def test_a_value_equal_to_a_column_name_is_not_a_header(tmp_path):
    path = _write(tmp_path / "extra.csv", ["song_id,name,isrc", "s1,a,b", "song_id,name,x"])
    table = read_table(path, CONTRACT.tables[tables.SONG_EXTRA])
    assert table["song_id"].to_pylist() == ["s1", "song_id"]


def test_read_header_names_a_missing_an_empty_and_a_non_utf8_file(tmp_path):
    with pytest.raises(UserError, match=r"nowhere.csv: file not found; run `make data`"):
        read_header(tmp_path / "nowhere.csv")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(UserError, match=r"empty.csv: file is empty \(0 bytes\)"):
        read_header(tmp_path / "empty.csv")
    (tmp_path / "latin1.csv").write_bytes("s\xe9ng_id,name\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.csv: header row is not UTF-8"):
        read_header(tmp_path / "latin1.csv")
    (tmp_path / "bom.csv").write_bytes("\ufeffsong_id,name\r\ns1,a\r\n".encode())
    assert read_header(tmp_path / "bom.csv") == ["song_id", "name"]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (["song_id", "name"], r"missing column\(s\) \['isrc'\]$"),
        (["song_id", "title", "isrc", "x"], r"missing column\(s\) \['name'\], unexpected column"),
        (["song_id", "name", "isrc", "x"], r"unexpected column\(s\) \['x'\]; remove them$"),
        (["name", "song_id", "isrc"], r"columns are in the wrong order$"),
    ],
)
def test_check_columns_names_missing_unexpected_and_misordered_columns(header, message):
    expected = list(CONTRACT.tables[tables.SONG_EXTRA].types)
    check_columns(Path("extra.csv"), expected, expected)
    with pytest.raises(UserError) as err:
        check_columns(Path("extra.csv"), header, expected)
    lines = str(err.value).splitlines()
    assert lines[0].startswith("extra.csv: ")
    assert re.search(message, lines[0]), lines[0]
    assert lines[1] == f"expected exactly these columns, in this order: {expected}"


def test_a_bad_value_names_its_row_and_column(tmp_path):
    header = "song_id,song_length,genre_ids,artist_name,composer,lyricist,language"
    path = _write(
        tmp_path / "songs.csv", [header, "s1,1000,465,a,c,l,52.0", "s2,long,465,a,c,l,3"]
    )
    with pytest.raises(UserError) as err:
        read_table(path, CONTRACT.tables[tables.SONGS])
    assert str(err.value).splitlines()[0] == (
        f"{path}: row 2, column 'song_length': 'long' is not a valid int32"
    )
    empty = _write(tmp_path / "only_header.csv", [header])
    with pytest.raises(UserError, match="has a header but no rows"):
        read_table(empty, CONTRACT.tables[tables.SONGS])


def test_a_stage_reads_only_the_columns_it_needs_with_their_declared_types(tmp_path):
    header = "song_id,song_length,genre_ids,artist_name,composer,lyricist,language"
    path = _write(tmp_path / "songs.csv", [header, "s1,1000,465,a,c,l,52.0", "s2,5,,b,,,3"])
    table = read_table(path, CONTRACT.tables[tables.SONGS], ["song_id", "language"])
    assert table.column_names == ["song_id", "language"]
    assert table.schema.field("language").type == CONTRACT.tables[tables.SONGS].types["language"]
    assert table["language"].to_pylist() == [52.0, 3.0]
    # The header is still checked whole: a renamed column is named, whichever columns are read.
    renamed = _write(tmp_path / "renamed.csv", [header.replace("composer", "writer"), "s1"])
    with pytest.raises(UserError, match="column 'composer' is missing, 'writer' is in its place"):
        read_table(renamed, CONTRACT.tables[tables.SONGS], ["song_id"])


def test_an_empty_field_is_missing_quoted_or_not(tmp_path):
    """A file written by a quote-all CSV writer (pyarrow's, pandas' QUOTE_ALL): its "" fields
    are missing as Kaggle's empty ones are, as the release bundle reads an empty source."""
    header = "msno,song_id,source_system_tab,source_screen_name,source_type,target"
    path = _write(
        tmp_path / "train.csv",
        [header, 'm1,s1,,"",null,1', '"m2","s2","","Radio","radio","0"'],
    )
    table = read_table(path, CONTRACT.tables[tables.TRAIN])
    assert table["source_system_tab"].to_pylist() == [None, None]
    assert table["source_screen_name"].to_pylist() == [None, "Radio"]
    assert table["source_type"].to_pylist() == ["null", "radio"]  # Kaggle's literal 'null'


def test_dictionary_reads_text_dictionary_encoded_and_the_numbers_as_declared(tmp_path):
    header = "msno,song_id,source_system_tab,source_screen_name,source_type,target"
    path = _write(tmp_path / "train.csv", [header, "m1,s1,radio,,radio,1", "m1,s2,,Radio,,0"])
    table = read_table(path, CONTRACT.tables[tables.TRAIN], dictionary=True)
    text = pa.dictionary(pa.int32(), pa.string())
    assert [field.type for field in table.schema] == [text] * 5 + [pa.int8()]
    assert table["msno"].to_pylist() == ["m1", "m1"]
    assert table["source_system_tab"].to_pylist() == ["radio", None]
    plain = read_table(path, CONTRACT.tables[tables.TRAIN])
    assert plain.schema.field("msno").type == pa.string()
    assert table.cast(plain.schema).equals(plain)


TOY = Contract(
    tables={
        "plays.csv": Table(
            {"user": Column(pa.string()), "label": Column(pa.int8())}, dictionary=True
        ),
        "users.csv": Table({"user": Column(pa.string()), "age": Column(pa.int16())}),
        "truth.csv": Table({"p": Column(pa.float64())}, required=False),
    },
    examples="plays.csv",
    target="label",
)


def test_read_tables_reads_every_required_table_and_the_optional_ones_present(tmp_path):
    _write(tmp_path / "plays.csv", ["user,label", "u1,1", "u2,0"])
    _write(tmp_path / "users.csv", ["user,age", "u1,30", "u2,41"])
    found = read_tables(tmp_path, TOY)
    assert list(found) == ["plays.csv", "users.csv"]
    assert pa.types.is_dictionary(found["plays.csv"].schema.field("user").type)
    assert found["users.csv"].schema.field("user").type == pa.string()
    assert found["users.csv"]["age"].to_pylist() == [30, 41]
    _write(tmp_path / "truth.csv", ["p", "0.25", "0.75"])
    assert read_tables(tmp_path, TOY)["truth.csv"]["p"].to_pylist() == [0.25, 0.75]
    (tmp_path / "users.csv").unlink()
    with pytest.raises(UserError, match=r"users.csv: file not found; run `make data`"):
        read_tables(tmp_path, TOY)
