"""What was published when: the versions of a source's document, each with its publication time.

The cache of :mod:`hometwin.fetch` keeps every version of a document a service published (the
forecasts a live twin fetched; a forecast archive).  :class:`Versions` holds them parsed, ordered
by their *stamp* — the publication time the service states (MET Norway's ``meta.updated_at``),
else the retrieval time — and answers two questions (issue 23 part 2):

* :meth:`Versions.at` — the newest version published at or before ``t``: the forecast a planner
  replanning at ``t`` could have had (nothing published after ``t``);
* :meth:`Versions.index_at` — for each time ``τ`` the newest version published at or before ``τ``
  (the shortest lead): the weather a replay takes as what happened.  A time before the first
  version takes the first (the truth of a replay, not anyone's forecast).

Pure; no I/O (the adapters give the documents, :func:`hometwin.fetch.cached` lists them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np


@dataclass(frozen=True)
class Version:
    """One published document, parsed."""

    stamp: float  # [Unix s] publication time the service states, else retrieval time
    retrieved_at: float  # [Unix s]
    key: str  # identifies the document (its cache file's name)
    data: dict[str, np.ndarray]


class Versions:
    """Published versions of one request, oldest stamp first (ties: the later retrieval last)."""

    def __init__(self, versions: Iterable[Version]):
        self.items = sorted(versions, key=lambda v: (v.stamp, v.retrieved_at))
        if not self.items:
            raise ValueError("no published version")
        self.stamps = np.array([v.stamp for v in self.items], dtype=np.float64)

    @classmethod
    def from_documents(cls, docs: Iterable[Any], parse: Callable[[Any], dict[str, np.ndarray]]) -> "Versions":
        """From :class:`hometwin.fetch.Document` s; ``parse(doc)`` gives a document's arrays.
        Documents with the same stamp and the same body are one version (a forecast fetched
        again unchanged); one that cannot be parsed (a damaged cache file) is left out, unless
        none can (then its error)."""
        seen: dict[tuple[float, bytes], Version] = {}
        problem: Exception | None = None
        for doc in docs:
            stamp = doc.published_at if doc.published_at is not None else doc.retrieved_at
            ident = (float(stamp), bytes(doc.body))
            if ident in seen:
                continue
            key = doc.path.stem if getattr(doc, "path", None) is not None else f"{stamp:.0f}"
            try:
                seen[ident] = Version(float(stamp), float(doc.retrieved_at), key, parse(doc))
            except ValueError as exc:  # json.JSONDecodeError is one
                problem = exc
        if not seen and problem is not None:
            raise problem
        return cls(seen.values())

    def __len__(self) -> int:
        return len(self.items)

    @property
    def first(self) -> Version:
        return self.items[0]

    @property
    def last(self) -> Version:
        return self.items[-1]

    def at(self, t: float) -> Version | None:
        """The newest version whose stamp is at or before ``t`` (None: nothing published yet)."""
        j = int(np.searchsorted(self.stamps, float(t), side="right")) - 1
        return self.items[j] if j >= 0 else None

    def index_at(self, times: np.ndarray) -> np.ndarray:
        """For each time, the index of the newest version stamped at or before it (0 before the first)."""
        idx = np.searchsorted(self.stamps, np.asarray(times, dtype=np.float64), side="right") - 1
        return np.maximum(idx, 0)

    def span(self) -> tuple[float, float]:
        """[Unix s] first and last time any version covers (``epoch_s`` of the data)."""
        return (min(float(v.data["epoch_s"][0]) for v in self.items),
                max(float(v.data["epoch_s"][-1]) for v in self.items))
