"""A server's node definitions (/object_info), fetched one node class at a time.

GET /object_info serialises every node class the server has: on ComfyUI 0.8.0 with
this pack that is 600+ classes and 0.7-3.8 s on a 2-core box, paid before the first
prompt of every ``run`` of an editor-format workflow and at the start of every batch.
A workflow uses a dozen classes, and both ComfyUI 0.3.64 and 0.8.0 answer
GET /object_info/{class} for one (``{}`` when the server lacks it), in milliseconds.

:class:`NodeInfo` is a read-only mapping ``class name -> definition`` that asks for
each class the first time it is looked up and remembers the answer (present or not);
``in``, ``[]`` and ``.get`` are all the converter, ``--set`` typing and the server
pool need. Iterating or ``len()`` needs the whole list: then (and for a class name
the route cannot carry: one with ``/``) it fetches /object_info once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

FetchOne = Callable[[str], dict[str, Any]]  # GET /object_info/{quoted class}
FetchAll = Callable[[], dict[str, Any]]  # GET /object_info


class NodeInfo(Mapping[str, dict[str, Any]]):
    def __init__(self, fetch_one: FetchOne, fetch_all: FetchAll) -> None:
        self._fetch_one, self._fetch_all = fetch_one, fetch_all
        self._known: dict[str, dict[str, Any] | None] = {}
        self._all: dict[str, Any] | None = None
        self._lock = threading.Lock()  # a pool's threads share one server's NodeInfo

    @classmethod
    def of(cls, info: Mapping[str, Any]) -> NodeInfo:
        """A NodeInfo over a complete /object_info already in hand (tests, recorded data)."""
        full = dict(info)
        made = cls(lambda name: {}, lambda: full)
        made._all = full
        return made

    def full(self) -> dict[str, Any]:
        """The whole /object_info (fetched once)."""
        with self._lock:
            if self._all is None:
                self._all = self._fetch_all()
            return self._all

    def lookup(self, name: str) -> dict[str, Any] | None:
        if self._all is not None:
            return self._all.get(name)
        if not name or "/" in name:
            return self.full().get(name)
        with self._lock:
            if name not in self._known:
                self._known[name] = self._fetch_one(quote(name, safe="")).get(name)
            return self._known[name]

    def knows(self, names: frozenset[str] | set[str]) -> bool:
        """Whether every name's answer (present or not) is in hand, without asking."""
        return self._all is not None or all(n in self._known for n in names)

    def missing(self, names: frozenset[str] | set[str]) -> list[str]:
        """The names the server lacks (every one asked, so the answer is complete)."""
        return sorted(n for n in names if self.lookup(n) is None)

    def __getitem__(self, name: str) -> dict[str, Any]:
        found = self.lookup(name) if isinstance(name, str) else None
        if found is None:
            raise KeyError(name)
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.lookup(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.full())

    def __len__(self) -> int:
        return len(self.full())
