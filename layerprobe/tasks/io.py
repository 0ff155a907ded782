"""Reading the public data formats: every problem becomes a one-line `DataError` naming file, line, field.

The task loaders (LAMA TSV, TruthfulQA CSV/JSON, ReClor JSON, GSM8K and MPS JSONL) all go through
these helpers, so a missing file, undecodable bytes, an empty file, a missing column or field and
a wrong type are reported the same way everywhere.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from layerprobe.errors import DataError


def read_text(path: str | Path) -> str:
    """The file's text as UTF-8 (BOM tolerated); missing, undecodable or empty files raise `DataError`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except IsADirectoryError:
        raise DataError(path, "is a directory, expected a file") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(path, f"undecodable bytes (not UTF-8) at byte {error.start}", line=line) from None
    if not text.strip():
        raise DataError(path, "empty file")
    return text


def read_table(path: str | Path, required: list[str], delimiter: str = ",") -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV/TSV with a header line, as (line number, row); checks the required columns."""
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = reader.fieldnames or []
    missing = [column for column in required if column not in header]
    if missing:
        raise DataError(path, f"missing column '{missing[0]}' (header has {', '.join(map(repr, header))})",
                        line=1, field=missing[0])
    rows: list[tuple[int, dict[str, str]]] = []
    start = 2
    for row in reader:
        for column in required:
            if row.get(column) is None:
                raise DataError(path, "row has too few fields", line=start, field=column)
        rows.append((start, row))
        start = reader.line_num + 1
    if not rows:
        raise DataError(path, "no data rows after the header", line=2)
    return rows


def read_json(path: str | Path) -> Any:
    """A whole-file JSON document."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(path, f"invalid JSON ({error.msg})", line=error.lineno) from None


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """One JSON object a line, as (line number, object); blank lines are skipped."""
    text = read_text(path)
    records: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(path, f"invalid JSON ({error.msg})", line=number) from None
        if not isinstance(record, dict):
            raise DataError(path, f"expected a JSON object, got {type(record).__name__}", line=number)
        records.append((number, record))
    return records


def json_records(path: str | Path, document: Any) -> list[tuple[int | None, dict[str, Any]]]:
    """The objects of a JSON list, each with its line in the file when it can be located (for messages)."""
    if not isinstance(document, list) or not document:
        raise DataError(path, "expected a non-empty JSON list of objects")
    text = read_text(path)
    lines = _object_start_lines(text)
    records: list[tuple[int | None, dict[str, Any]]] = []
    for index, record in enumerate(document):
        line = lines[index] if index < len(lines) else None
        if not isinstance(record, dict):
            raise DataError(path, f"item {index} is a {type(record).__name__}, expected an object", line=line)
        records.append((line, record))
    return records


def _object_start_lines(text: str) -> list[int]:
    """Line numbers where the top-level list's objects start (depth-1 '{' outside strings)."""
    starts: list[int] = []
    depth, line, in_string, escaped = 0, 1, False, False
    for char in text:
        if char == "\n":
            line += 1
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "[{":
            if char == "{" and depth == 1:
                starts.append(line)
            depth += 1
        elif char in "]}":
            depth -= 1
    return starts


def field(record: dict[str, Any], name: str, kind: type | tuple[type, ...], path: str | Path, line: int | None) -> Any:
    """`record[name]`, checked to exist and have the expected type."""
    if name not in record:
        raise DataError(path, "missing field", line=line, field=name)
    value = record[name]
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(path, f"expected {expected}, got {type(value).__name__}", line=line, field=name)
    return value


def nonempty(value: str, path: str | Path, line: int | None, name: str) -> str:
    """A stripped string that must not be empty."""
    value = value.strip()
    if not value:
        raise DataError(path, "empty value", line=line, field=name)
    return value
