"""Reading data files and hub datasets: files are checked whole, rows one at a time.

Every task loader goes through this module, so the rules are the same everywhere:

- A broken *file* (missing, not UTF-8, empty, not JSON, not Parquet, a missing column) is a
  `DataError`: one line naming the file, the line (or row) and the field.
- A *row* that cannot make an item (an empty question, an ambiguous answer, a candidate list that
  holds only the answer, ...) is skipped: its parser raises `RowProblem`, `RowLog` counts it, and
  the loader prints one warning per file with the count, the reasons and the first line numbers.
  The count travels with the items (`LoadedItems.skipped_rows`) into the results CSV. When more
  than half of a file's rows are unusable the file is refused (`DataError`): then it is the wrong
  file or the wrong format, not a few messy rows.

Sources (`read_rows`): a local file by its content (a JSON list, JSON lines, Parquet, CSV, or TSV
such as the LAMA files), or `hf:NAME[:CONFIG[:SPLIT]]` for a dataset on the Hugging Face hub
(`hf:cais/mmlu:all:test`; `hub:` works too, as in trace_layers.py's `--corpus`). Parquet and hub
datasets are read with `datasets.load_dataset`. JSON, JSON lines and CSV/TSV are read here
instead: these readers keep the line number of every record (row errors name it), tolerate a BOM
and CRLF, and leave TruthfulQA's mc_task.json intact (its targets are objects keyed by answer
text, which Arrow would turn into one struct column with every answer of the file as a field).
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Any, TypeVar

from layerprobe.errors import DataError, LayerprobeError
from layerprobe.tasks.base import MCItem

T = TypeVar("T")
HUB_PREFIXES = ("hf:", "hub:")
SHOWN_LINES = 5
SHOWN_REASONS = 3
"""How many line numbers and distinct reasons of skipped rows the warning names."""


# --------------------------------------------------------------------------- whole files


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


@dataclass
class Rows:
    """The records of one data source, each with where it came from (for messages).

    `where` is a line number for text formats (`unit` "line") and the 0-based record index for
    Parquet and hub datasets (`unit` "row"). Values are what the format holds: strings in CSV,
    JSON types in JSON, Python objects (lists, dicts, ints, None) from Parquet and the hub.
    """

    source: str
    records: list[tuple[int, dict[str, Any]]]
    unit: str = "line"
    columns: list[str] = dataclass_field(default_factory=list)
    header_line: int | None = None

    def __post_init__(self) -> None:
        if not self.columns:
            self.columns = list(dict.fromkeys(key for _, record in self.records for key in record))

    def __len__(self) -> int:
        return len(self.records)

    def error(self, message: str, where: int | None = None, field: str | None = None) -> DataError:
        if self.unit == "row":
            return DataError(self.source, message, row=where, field=field)
        return DataError(self.source, message, line=where, field=field)

    def has(self, columns: Iterable[str]) -> bool:
        return all(column in self.columns for column in columns)

    def require(self, columns: Iterable[str]) -> None:
        """A column no record has is a broken file, named with the columns the file does have (at the
        header line, or at the first record of formats without a header)."""
        missing = [column for column in columns if column not in self.columns]
        if missing:
            where = self.header_line if self.header_line is not None else self.records[0][0]
            raise self.error(f"missing column '{missing[0]}' (the file has {', '.join(map(repr, self.columns))})",
                             where=where, field=missing[0])


def read_rows(source: str | Path | Rows) -> Rows:
    """All records of a local file or a hub dataset (see the module docstring for the formats)."""
    if isinstance(source, Rows):
        return source
    text_source = str(source)
    if text_source.startswith(HUB_PREFIXES):
        return hub_rows(text_source)
    path = Path(source)
    if path.suffix.lower() == ".parquet":
        return parquet_rows(path)
    text = read_text(path)
    start = text.lstrip()[:1]
    if start == "[":
        return json_rows(path, text)
    if start == "{":
        return jsonl_rows(path, text)
    header = text.splitlines()[0]
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".txt") or "\t" in header else ","
    return table_rows(path, text, delimiter)


def table_rows(path: str | Path, text: str, delimiter: str = ",") -> Rows:
    """A CSV/TSV with a header line; a row with too few fields is kept (its missing fields are None)."""
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [name.strip() for name in reader.fieldnames or []]
    reader.fieldnames = header
    records: list[tuple[int, dict[str, Any]]] = []
    line = 2
    for row in reader:
        records.append((line, {key: value for key, value in row.items() if key is not None}))
        line = reader.line_num + 1
    if not records:
        raise DataError(path, "no data rows after the header", line=2)
    return Rows(str(path), records, "line", header, header_line=1)


def json_rows(path: str | Path, text: str) -> Rows:
    """A JSON list of objects, each with the line where it starts."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(path, f"invalid JSON ({error.msg})", line=error.lineno) from None
    if not isinstance(document, list) or not document:
        raise DataError(path, "expected a non-empty JSON list of objects")
    lines = _object_start_lines(text)
    records: list[tuple[int, dict[str, Any]]] = []
    for index, record in enumerate(document):
        line = lines[index] if index < len(lines) else 1
        if not isinstance(record, dict):
            raise DataError(path, f"item {index} is a {type(record).__name__}, expected an object", line=line)
        records.append((line, record))
    return Rows(str(path), records, "line")


def jsonl_rows(path: str | Path, text: str) -> Rows:
    """One JSON object a line (blank lines skipped); a line that is not a JSON object breaks the file."""
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
    return Rows(str(path), records, "line")


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


def _dataset_rows(source: str, dataset: Any) -> Rows:
    records = [(index, record) for index, record in enumerate(dataset.to_list())]
    if not records:
        raise DataError(source, "no rows")
    return Rows(source, records, "row", list(dataset.column_names))


def parquet_rows(path: Path) -> Rows:
    """A Parquet file through `datasets` (its Arrow copy is cached under $LAYERPROBE_CACHE/datasets;
    no progress bars: the skipped-rows warning stays the one line a load prints)."""
    import datasets

    from layerprobe.models import cache_dir

    if not path.is_file():
        raise DataError(path, "no such file")
    shown = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        dataset = datasets.load_dataset("parquet", data_files=str(path.resolve()), split="train",
                                        cache_dir=str(cache_dir() / "datasets"))
    except Exception as error:  # pyarrow and datasets raise many types for a broken file
        raise DataError(path, f"not a readable Parquet file ({_first_line(error)})") from None
    finally:
        if shown:
            datasets.enable_progress_bars()
    return _dataset_rows(str(path), dataset)


def parse_hub_id(source: str) -> tuple[str, str | None, str | None]:
    """`hf:NAME[:CONFIG[:SPLIT]]` -> (NAME, CONFIG or None, SPLIT or None)."""
    body = source.split(":", 1)[1]
    name, config, split = (body.split(":") + [None, None])[:3]
    if not name or body.count(":") > 2:
        raise LayerprobeError(f"{source}: expected hf:NAME[:CONFIG[:SPLIT]], e.g. hf:cais/mmlu:all:test")
    return name, config or None, split or None


def hub_rows(source: str) -> Rows:
    """A Hugging Face hub dataset's split (default "test", or its only split) through `datasets`."""
    from datasets import load_dataset

    name, config, split = parse_hub_id(source)
    try:
        loaded = load_dataset(name, config, split=split)
    except Exception as error:  # offline, unknown id, gated, missing config: datasets raises many types
        offline = " (offline: HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") in ("1", "true") else ""
        raise LayerprobeError(f"{source}: cannot load '{name}' from the Hugging Face hub{offline}: "
                              f"{_first_line(error)}") from None
    if split is None:
        splits = list(loaded)
        chosen = "test" if "test" in splits else splits[0] if len(splits) == 1 else None
        if chosen is None:
            raise LayerprobeError(f"{source}: name a split, one of {', '.join(splits)} (hf:{name}:{config or ''}:SPLIT)")
        loaded = loaded[chosen]
    return _dataset_rows(source, loaded)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --------------------------------------------------------------------------- rows


class RowProblem(Exception):
    """Raised while parsing one row: the row cannot make an item and is skipped (not fatal)."""

    def __init__(self, reason: str, field: str | None = None):
        super().__init__(reason)
        self.reason, self.field = reason, field


@dataclass(frozen=True)
class SkippedRow:
    where: int
    reason: str
    field: str | None = None


class LoadedItems(list[MCItem]):
    """A loader's items, plus where they came from and how many of the file's rows were skipped.

    A list, so it goes wherever items go; the study-1 runner writes `source` and `skipped_rows`
    into the results CSV (columns `data`, `skipped_rows`) so the report can show them."""

    def __init__(self, items: Iterable[MCItem] = (), source: str = "built-in", skipped_rows: int = 0):
        super().__init__(items)
        self.source, self.skipped_rows = source, skipped_rows


@dataclass
class RowLog:
    """The rows of one source that could not make an item: counted, named in one warning, refused past half."""

    rows: Rows
    skipped: list[SkippedRow] = dataclass_field(default_factory=list)
    amended: list[SkippedRow] = dataclass_field(default_factory=list)

    def parse(self, parse_row: Callable[[dict[str, Any]], T]) -> list[tuple[int, T]]:
        """(where, parse_row(record)) for every row whose parser does not raise `RowProblem`."""
        parsed = []
        for where, record in self.rows.records:
            try:
                parsed.append((where, parse_row(record)))
            except RowProblem as problem:
                self.skip(where, problem.reason, problem.field)
        self.check()
        return parsed

    def skip(self, where: int, reason: str, field: str | None = None) -> None:
        """Count a row that cannot make an item (also for problems found after parsing)."""
        self.skipped.append(SkippedRow(where, reason, field))

    def amend(self, where: int, reason: str) -> None:
        """Note a row that makes an item only after something was dropped from it (named in the warning)."""
        self.amended.append(SkippedRow(where, reason))

    def check(self) -> None:
        """More than half of the rows unusable: the file is refused, naming the first bad row."""
        total = len(self.rows)
        if len(self.skipped) * 2 > total:
            first = self.skipped[0]
            more = f" (and {len(self.skipped) - 1} more: {len(self.skipped)} of {total} rows unusable)" \
                if len(self.skipped) > 1 else ""
            raise self.rows.error(first.reason + more, where=first.where, field=first.field)

    def summary(self) -> str:
        """"skipped 3 of 60 rows (2 x no incorrect answers, 1 x ...; lines 5, 17, 40)", or "" if none."""
        parts = []
        for label, entries in (("skipped", self.skipped), ("amended", self.amended)):
            if not entries:
                continue
            reasons = Counter(entry.reason for entry in entries)
            shown = ", ".join(str(entry.where) for entry in entries[:SHOWN_LINES]) + (", ..." if len(entries) > SHOWN_LINES else "")
            text = "; ".join(f"{count} x {reason}" for reason, count in reasons.most_common(SHOWN_REASONS))
            if len(reasons) > SHOWN_REASONS:
                text += f"; {len(reasons) - SHOWN_REASONS} other reasons"
            parts.append(f"{label} {len(entries)} of {len(self.rows)} rows ({text}; {self.rows.unit}s {shown})")
        return "; ".join(parts)

    def finish(self, items: Iterable[MCItem]) -> LoadedItems:
        """Check the threshold, print the one warning, and hand the items on with the skip count."""
        self.check()
        summary = self.summary()
        if summary:
            print(f"warning: {self.rows.source}: {summary}", file=sys.stderr)
        return LoadedItems(items, self.rows.source, len(self.skipped))


# --------------------------------------------------------------------------- fields of a row


def field(record: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """`record[name]`, which must be present (not None) and of the expected type, else `RowProblem`."""
    value = record.get(name)
    if value is None:
        raise RowProblem("missing value", name)
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        expected = " or ".join(k.__name__ for k in _kinds(kind))
        raise RowProblem(f"expected {expected}, got {type(value).__name__}", name)
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def text(record: dict[str, Any], name: str) -> str:
    """A non-empty stripped string."""
    value = field(record, name, str).strip()
    if not value:
        raise RowProblem("empty value", name)
    return value


def integer(record: dict[str, Any], name: str) -> int:
    """An int, also written as digits (CSV cells are strings)."""
    value = field(record, name, (int, str))
    if isinstance(value, str):
        if not value.strip().lstrip("-").isdigit():
            raise RowProblem(f"expected an integer, got {value!r}", name)
        return int(value)
    return value


def string_list(record: dict[str, Any], name: str) -> list[str]:
    """A non-empty list of non-empty strings, stripped (in CSV also a JSON or Python list literal)."""
    values = field(record, name, (list, tuple, str))
    if isinstance(values, str):
        values = literal_list(values, name)
    if not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise RowProblem("expected a non-empty list of non-empty strings", name)
    return [v.strip() for v in values]


def literal_list(value: str, name: str) -> list[Any]:
    """A list written into a CSV cell as JSON or as a Python literal (what pandas writes for a list)."""
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        raise RowProblem(f"expected a list, got {value[:40]!r}", name) from None
    if not isinstance(parsed, (list, tuple)):
        raise RowProblem(f"expected a list, got {type(parsed).__name__}", name)
    return list(parsed)
