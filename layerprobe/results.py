"""The tidy results CSV: one row per (model, task, subtask, language, method, layer, metric).

Every script writes through `ResultsFile`, which rewrites the whole file atomically (temp file +
rename) after each finished unit of work, so a killed run leaves either the old or the new file,
never half of one, and a restarted run skips the units already present. Two processes may write the
same file (two scripts sharing `out/data`): each write holds a lock on the folder and first takes in
what the other wrote since, so neither loses the other's rows.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from layerprobe.errors import DataError
from layerprobe.publish import staged

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

COLUMNS = [
    "model", "task", "subtask", "language", "method", "layer", "n_layers",
    "metric", "value", "n_items", "ci_low", "ci_high",
]
UNIT = ["model", "task", "subtask", "language", "method"]
"""The columns that name one unit of work: all its layers and metrics are written together."""


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never a mix."""
    with staged(path) as staging:
        staging.write_text(text, encoding="utf-8", newline="")


def atomic_write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


def read_results(path: str | Path, required: Iterable[str] = COLUMNS) -> pd.DataFrame:
    """Read a results CSV and check it has the schema's columns (one-line `DataError` if not)."""
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"subtask": str, "language": str})
    except pd.errors.EmptyDataError:
        raise DataError(path, "empty file, expected a results CSV header") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataError(path, f"not a readable CSV ({str(error).splitlines()[0]})") from None
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(missing)}", line=1, field=missing[0])
    for column in ("subtask", "language"):
        if column in frame.columns:
            frame[column] = frame[column].astype(object).fillna("").astype(str)
    return frame


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock on `folder`, held while a results file there is read and rewritten. Where
    there is none (Windows, a file system without flock) the catch-up before each write still narrows the race."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        handle = None
    try:
        if handle is not None and fcntl is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        if handle is not None:
            os.close(handle)  # closing releases the lock


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells that another process rewrote the file: its inode (each atomic rewrite makes a new one),
    modification time and size."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


class ResultsFile:
    """A results CSV that grows one unit of work at a time and resumes after an interruption."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.frame = pd.DataFrame(columns=COLUMNS)
        self._seen: tuple[int, int, int] | None = None
        self._catch_up()

    def _catch_up(self) -> None:
        """Reread the file if another writer changed it since this one last read or wrote it."""
        stamp = _stamp(self.path)
        if stamp is not None and stamp != self._seen:
            self.frame = read_results(self.path)
        self._seen = stamp

    def done(self, **unit: object) -> bool:
        """True if rows for this unit (a subset of the UNIT columns) are already in the file."""
        if self.frame.empty:
            return False
        mask = np.ones(len(self.frame), dtype=bool)
        for key, value in unit.items():
            mask &= self.frame[key].astype(str).to_numpy() == str(value)
        return bool(mask.any())

    def add(self, rows: Iterable[Mapping[str, object]] | pd.DataFrame) -> None:
        """Append a finished unit's rows, replacing older rows of the same unit, and rewrite the file."""
        new = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        if new.empty:
            return
        missing = [column for column in COLUMNS if column not in new.columns]
        if missing:
            raise ValueError(f"result rows lack schema column(s) {missing}")
        for column in ("subtask", "language"):
            new[column] = new[column].astype(object).fillna("").astype(str)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _folder_lock(self.path.parent):
            self._catch_up()
            self._merge(new)
            atomic_write_csv(self.path, self.frame)
            self._seen = _stamp(self.path)

    def _merge(self, new: pd.DataFrame) -> None:
        """`new` replaces the rows of its units in the frame."""
        if not self.frame.empty:
            keys = new[UNIT].astype(str).drop_duplicates()
            old_keys = self.frame[UNIT].astype(str)
            replaced = old_keys.merge(keys, how="left", indicator=True)["_merge"].eq("both").to_numpy()
            self.frame = self.frame.loc[~replaced]
        extra = [column for column in new.columns if column not in COLUMNS]
        order = COLUMNS + [c for c in self.frame.columns if c not in COLUMNS] + [c for c in extra if c not in self.frame.columns]
        frames = [frame for frame in (self.frame, new) if not frame.empty]
        self.frame = pd.concat(frames, ignore_index=True).reindex(columns=order)


def wilson_interval(successes: np.ndarray | float, n: int, z: float = 1.959964) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson score interval for a binomial proportion; well behaved at 0% and 100%."""
    if n == 0:
        nan = np.full(np.shape(successes), np.nan)
        return nan, nan
    p = np.asarray(successes, dtype=float) / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def bootstrap_interval(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile bootstrap interval of the mean over the last axis (items), per leading index."""
    values = np.asarray(values, dtype=float)
    n = values.shape[-1]
    if n == 0:
        nan = np.full(values.shape[:-1], np.nan)
        return nan, nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    means = values[..., idx].mean(axis=-1)  # [..., n_boot]
    return np.percentile(means, 2.5, axis=-1), np.percentile(means, 97.5, axis=-1)


T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]
"""Student's t 97.5% quantiles for 1..10 degrees of freedom (no scipy for a handful of numbers)."""


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """95% t interval of the mean of a few runs (seeds); NaN for fewer than 2, z = 1.96 past 11."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    quantile = T_975[len(values) - 2] if len(values) - 1 <= len(T_975) else 1.959964
    half = quantile * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def layer_rows(
    values: np.ndarray,
    *,
    metric: str,
    model: str,
    task: str,
    method: str,
    subtask: str = "",
    language: str = "",
    interval: str = "wilson",
    seed: int = 0,
    **extra: object,
) -> list[dict[str, object]]:
    """Rows for one metric at every layer from per-item values of shape [n_layers + 1, n_items].

    `interval="wilson"` treats the values as 0/1 outcomes; `"bootstrap"` works for any values
    in [0, 1] (MC2's probability mass, for instance).
    """
    values = np.asarray(values, dtype=float)
    n_items = values.shape[1]
    means = values.mean(axis=1) if n_items else np.full(values.shape[0], math.nan)
    if interval == "wilson":
        low, high = wilson_interval(values.sum(axis=1), n_items)
    else:
        low, high = bootstrap_interval(values, seed=seed)
    n_layers = values.shape[0] - 1
    return [
        dict(model=model, task=task, subtask=subtask, language=language, method=method,
             layer=layer, n_layers=n_layers, metric=metric, value=float(means[layer]),
             n_items=n_items, ci_low=float(low[layer]), ci_high=float(high[layer]), **extra)
        for layer in range(n_layers + 1)
    ]
