"""User-facing errors: one line, no traceback, exit code 2 (see `layerprobe.cli.run`)."""

from __future__ import annotations

from pathlib import Path


class LayerprobeError(Exception):
    """An error the user can fix (bad flag, missing package, bad data file)."""


class DataError(LayerprobeError):
    """A data file that does not match its format: names the file, the line and the field."""

    def __init__(self, path: str | Path, message: str, line: int | None = None, field: str | None = None,
                 row: int | None = None):
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if row is not None:  # formats without lines (Parquet, hub datasets): the 0-based record index
            where += f", row {row}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.field, self.row = str(path), line, field, row
