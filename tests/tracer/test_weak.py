"""WeakIdentityMap: by identity, asking the object nothing, keeping nothing alive."""

from __future__ import annotations

import gc
import weakref

from switchtrace.tracer.weak import WeakIdentityMap


class Unhashable:
    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other):
        raise AssertionError("compared")


def test_objects_are_told_apart_by_identity_and_never_asked():
    first, second = Unhashable(), Unhashable()
    held: WeakIdentityMap[str] = WeakIdentityMap()
    held[first] = "first"
    held[second] = "second"
    assert (held.get(first), held.get(second), len(held)) == ("first", "second", 2)
    assert held.pop(first) == "first"
    assert (held.pop(first), held.get(first, "none"), len(held)) == (None, "none", 1)


def test_an_entry_goes_with_its_object():
    held: WeakIdentityMap[int] = WeakIdentityMap()
    obj = Unhashable()
    held[obj] = 1
    del obj
    gc.collect()
    assert len(held) == 0


def test_an_entry_under_an_objects_id_for_another_object_is_not_its():
    """What an entry left under a reused id looks like (a dead object's whose
    callback has not run): the weak reference tells it is not this one."""
    held: WeakIdentityMap[int] = WeakIdentityMap()
    obj, other = Unhashable(), Unhashable()
    held._entries[id(obj)] = (weakref.ref(other), 1)
    assert held.get(obj) is None
    assert held.pop(obj) is None
    assert len(held) == 0  # the stale entry is gone with the pop


def test_an_entry_replaced_before_its_object_dies_is_not_removed_by_the_old_callback():
    held: WeakIdentityMap[str] = WeakIdentityMap()
    obj = Unhashable()
    held[obj] = "old"
    held[obj] = "new"  # the first weak reference's callback must not remove this one
    gc.collect()
    assert held.get(obj) == "new"
    del obj
    gc.collect()
    assert len(held) == 0


def test_setdefault_keeps_the_first_value_and_replaces_another_objects_entry():
    held: WeakIdentityMap[str] = WeakIdentityMap()
    obj, other = Unhashable(), Unhashable()
    assert held.setdefault(obj, "first") == "first"
    assert held.setdefault(obj, "second") == "first"
    assert held.get(obj) == "first"
    held._entries[id(other)] = (weakref.ref(obj), "stale")  # (as under a reused id)
    assert held.setdefault(other, "its own") == "its own"
    assert (held.get(other), len(held)) == ("its own", 2)
    del obj, other
    gc.collect()
    assert len(held) == 0
