"""A mapping from objects, by identity, to values, that keeps no object alive.

For the application's own objects (responses, event loops):
:class:`weakref.WeakKeyDictionary` hashes its keys, and compares them with
``==``, so a response class that defines ``__eq__`` (and so has no hash) would
make switchtrace raise into the server, and one whose ``__eq__`` says two
responses are equal would make them share an entry. This map asks the object
nothing: it is keyed by ``id()``, and an entry holds a weak reference that
tells whether the object under that id is still the same one.
"""

from __future__ import annotations

import weakref
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class WeakIdentityMap(Generic[V]):
    """``obj -> value`` by identity; an entry goes when its object dies.

    Safe across threads as far as the GIL makes one dict operation atomic:
    each method is one such operation on the inner dict, and a weak
    reference's callback removes its own entry only."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[Any], V]] = {}

    def __setitem__(self, obj: Any, value: V) -> None:
        key = id(obj)
        entries = self._entries

        def forget(ref: weakref.ref[Any]) -> None:
            # Only this object's entry: another object may have its id now.
            entry = entries.get(key)
            if entry is not None and entry[0] is ref:
                entries.pop(key, None)

        entries[key] = (weakref.ref(obj, forget), value)

    def setdefault(self, obj: Any, value: V) -> V:
        """The value for ``obj``, ``value`` if it had none: two threads
        making one each get the same (one atomic dict operation), but where
        a dead object's entry is still under its id (its callback not run
        yet), which each replaces. (Its entry made as :meth:`__setitem__`
        makes one, which is on a request's path: inline there, a call less.)"""
        key, entries = id(obj), self._entries

        def forget(ref: weakref.ref[Any]) -> None:
            if entries.get(key, (None,))[0] is ref:  # (see __setitem__)
                entries.pop(key, None)

        entry = (weakref.ref(obj, forget), value)
        found = entries.setdefault(key, entry)
        if found is entry:
            return value
        if found[0]() is obj:
            return found[1]
        # A dead object's entry under this id (its callback not run yet).
        entries[key] = entry
        return value

    def get(self, obj: Any, default: V | None = None) -> V | None:
        entry = self._entries.get(id(obj))
        if entry is None or entry[0]() is not obj:
            return default
        return entry[1]

    def pop(self, obj: Any, default: V | None = None) -> V | None:
        """The value for ``obj``, removed; ``default`` if there is none."""
        # One atomic pop: two threads popping the same object get it once.
        # An entry under this id for another object is a dead one's whose
        # callback has not run yet: dropping it is what the callback does.
        entry = self._entries.pop(id(obj), None)
        if entry is None or entry[0]() is not obj:
            return default
        return entry[1]

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
