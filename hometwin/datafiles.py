"""Data files a spec or a runtime ``set`` names: confined, regular, bounded, never echoed.

A home's spec names CSV/TMY3 files (price series, load profiles, weather, load-shedding
schedules).  The spec is input — from a user, from a Kubernetes ``Home``, from a ``set`` over
the router — so a file it names is read only when

* it resolves (``..`` and symlinks followed) inside the spec's folder, the pod's data folder
  (``--data-dir``), or a data root the person running hometwin configured in the environment
  (:data:`ENV_DATA_ROOT`, a ``os.pathsep``-separated list of folders);
* it is a regular file (not ``/dev/zero``, a FIFO, a socket or a folder); and
* it is at most :data:`MAX_DATA_FILE_BYTES`.

Every reader opens its file through :func:`read_limited` (which checks the last two on the
open descriptor, so a file swapped after the check is still caught) and parses the bytes it
returned.  Messages name the file and the rule, never the file's contents.
"""

from __future__ import annotations

import os
import reprlib
import stat
from pathlib import Path

#: Largest data file read (64 MiB): a year of 1-minute prices in CSV is about 20 MiB, a TMY3
#: file 1.5 MiB; anything bigger is not a home's data and would only cost memory.
MAX_DATA_FILE_BYTES = 64 * 2**20
#: Largest home spec read (1 MiB): the biggest example is 4 KiB.
MAX_SPEC_BYTES = 2**20
#: Environment variable naming extra folders data files may come from (``os.pathsep``-separated).
ENV_DATA_ROOT = "HOMETWIN_DATA_ROOT"

_short = reprlib.Repr()
_short.maxstring = 120
_short.maxother = 120


class DataFileError(ValueError):
    """A data file that may not be read; the message names the file and the rule broken."""


def shown(text: str) -> str:
    """A path (or a name) as messages show it: repr'd and bounded."""
    return _short.repr(str(text))


def env_data_roots() -> list[Path]:
    """The data roots configured in :data:`ENV_DATA_ROOT` (resolved; empty entries ignored)."""
    return [Path(p).resolve() for p in os.environ.get(ENV_DATA_ROOT, "").split(os.pathsep) if p.strip()]


def confine(path: str, base_dir: str | None, data_dir: str | None = None) -> str:
    """The real path of a data file named ``path`` by a spec, refused outside the allowed folders.

    Relative paths resolve against ``base_dir`` (the spec's folder), or with ``data_dir`` (a pod,
    where the files are a mounted ConfigMap) by file name in ``data_dir``.  The result, symlinks
    resolved, must lie inside ``data_dir`` (or else ``base_dir``) or a root of
    :data:`ENV_DATA_ROOT`.  ``base_dir=None`` (a context built by hand in code, no spec) confines
    nothing.  The file need not exist (the reader says so); :func:`read_limited` checks the rest.
    """
    if not isinstance(path, str) or not path or "\x00" in path:
        raise DataFileError(f"not a file path (got {shown(path)})")
    if data_dir is not None and not os.path.isabs(path):
        joined = os.path.join(data_dir, os.path.basename(path))
    elif base_dir is not None:
        joined = os.path.join(base_dir, path)
    else:
        joined = path
    real = os.path.realpath(joined)
    if base_dir is None and data_dir is None:
        return real
    own = Path(data_dir if data_dir is not None else base_dir).resolve()  # type: ignore[arg-type]
    roots = [own] + env_data_roots()
    if not any(Path(real).is_relative_to(root) for root in roots):
        where = "the data folder" if data_dir is not None else "the spec's folder"
        extra = ", ".join(str(r) for r in roots[1:]) or f"none; set {ENV_DATA_ROOT} to allow one"
        raise DataFileError(f"{shown(path)} resolves to {shown(real)}, outside {where} {shown(own)} "
                            f"(files are read only there and from the data roots: {extra})")
    return real


def read_limited(path: str, what: str = "data file", limit: int = MAX_DATA_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or :class:`DataFileError`.

    Opened without blocking (a FIFO does not hang the reader) and checked on the open
    descriptor; at most ``limit + 1`` bytes are ever read (``/proc`` files report size 0).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise DataFileError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise DataFileError(f"{what} {shown(path)}: is a folder, not a regular file") from None
    except OSError as exc:
        raise DataFileError(f"{what} {shown(path)}: cannot open ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DataFileError(f"{what} {shown(path)}: not a regular file (a device, FIFO, socket or folder)")
        if st.st_size > limit:
            raise DataFileError(f"{what} {shown(path)}: {st.st_size} bytes, more than the limit of "
                                f"{limit // 2**20} MiB")
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise DataFileError(f"{what} {shown(path)}: more than the limit of {limit // 2**20} MiB")
        return b"".join(chunks)
    except OSError as exc:
        raise DataFileError(f"{what} {shown(path)}: cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)


def read_text(path: str, what: str = "data file", limit: int = MAX_DATA_FILE_BYTES) -> str:
    """:func:`read_limited` decoded as UTF-8 (a BOM dropped); undecodable bytes are an error that
    names the byte offset, not the bytes."""
    data = read_limited(path, what, limit)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{what} {shown(path)}: not UTF-8 text (byte {exc.start})") from None


def mtime_key(path: str) -> tuple[float, int]:
    """(modification time, size) of ``path`` for the readers' caches; (0, -1) when absent
    (the reader then raises its own 'not found')."""
    try:
        st = os.stat(path)
    except OSError:
        return 0.0, -1
    return st.st_mtime, st.st_size


class parse_errors:
    """``with parse_errors(path, "price CSV"):`` — any error of a parser (pandas, pvlib) inside
    becomes a :class:`DataFileError` naming the file, the exception's kind and a line number
    when the parser gave one, never the parser's text (which quotes the file: ``could not
    convert string to float: 'root:x:0:0…'``).  :class:`DataFileError` passes unchanged."""

    def __init__(self, path: str, what: str = "data file"):
        self.path, self.what = path, what

    def __enter__(self) -> "parse_errors":
        return self

    def __exit__(self, etype: type | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or isinstance(exc, DataFileError) or not isinstance(exc, Exception):
            return False
        import re

        line = re.search(r"\bline (\d+)", str(exc)[:500])
        at = f" at line {line.group(1)}" if line else ""
        raise DataFileError(f"{self.what} {shown(self.path)}: cannot be parsed{at} "
                            f"({type(exc).__name__})") from None


def checked_column(frame: object, column: object, path: str, what: str, lo: float, hi: float,
                   unit: str = "", header_lines: int = 1) -> "object":
    """The float64 values of ``frame[column]``, every one a finite number in ``[lo, hi]`` (a blank
    cell stays NaN), or a :class:`DataFileError` naming the file, the first bad line (counted
    from 1, ``header_lines`` before the first row) and the column."""
    import numpy as np
    import pandas as pd

    raw = frame[column]  # type: ignore[index]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    rows = np.asarray(frame.index)  # type: ignore[attr-defined]
    for test, rule in ((np.isnan(values) & ~pd.isna(raw).to_numpy(), "is not a number"),
                       (~np.isfinite(values) & ~np.isnan(values), "is not finite"),
                       (np.isfinite(values) & ((values < lo) | (values > hi)), f"is outside [{lo:g}, {hi:g}]{unit}")):
        bad = np.flatnonzero(test)
        if bad.size:
            row = int(rows[bad[0]]) if np.issubdtype(rows.dtype, np.integer) else int(bad[0])
            line = row + header_lines + 1
            more = f" (and {bad.size - 1} more)" if bad.size > 1 else ""
            raise DataFileError(f"{what} {shown(path)}: line {line}, column {shown(column)}: the value "
                                f"{rule}{more}")
    return values
