"""Cache entries that several processes may write at once (the model, tuned-lens and score caches).

Two tools, used by every cache:
- `staged(target)`: write a file or folder under a unique temporary name next to `target`, then
  publish it with one rename, so a reader sees no entry or a whole one, never half of one (an
  interrupted writer leaves only its hidden temporary behind).
- `building(target, ready)`: a file lock (`filelock`) next to `target`, so that when several
  processes find an entry missing at the same time one builds it and the others wait for it and
  then use it. Losing the race is not an error. The lock is released by the operating system
  if its holder dies, and the next waiter then builds the entry itself.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout


@contextmanager
def staged(target: str | Path, folder: bool = False) -> Iterator[Path]:
    """A fresh temporary file (or empty folder) next to `target`, renamed onto `target` when the block succeeds.

    A file replaces any older one. A folder replaces an older folder too, unless another process
    publishes its own folder in between: then that one stays and ours is dropped (same content).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}."
    if folder:
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix))
    else:
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=target.suffix)
        os.close(handle)
        staging = Path(name)
    try:
        yield staging
        if folder:
            _publish_folder(staging, target)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(staging, 0o666 & ~umask)  # mkstemp makes owner-only files; caches are shared
            os.replace(staging, target)
    finally:
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.unlink(missing_ok=True)


def _publish_folder(staging: Path, target: Path) -> None:
    """Rename `staging` onto `target`; an older `target` is moved aside first (rename cannot replace a full folder)."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
        try:
            os.replace(target, old / "entry")
        except FileNotFoundError:
            pass  # another process moved it first
    try:
        os.replace(staging, target)
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        # Another process published the entry between our move and our rename: keep theirs.
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def building(target: str | Path, ready: Callable[[Path], bool], what: str) -> Iterator[bool]:
    """True when this process must build `target`, False when it is ready (possibly built meanwhile by another).

    Hold the block while building: other processes asking for the same `target` wait on the lock
    (`what` says for what, e.g. "to convert smollm2-135m") and get False once it is ready.
    """
    target = Path(target)
    if ready(target):
        yield False
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.parent / f".{target.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for another process {what} ({target})", flush=True)
        lock.acquire()
    try:
        yield not ready(target)
    finally:
        lock.release()
