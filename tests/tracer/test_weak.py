"""WeakIdentityMap: by identity, asking the object nothing, keeping nothing alive."""

from __future__ import annotations

import gc

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


def test_an_entry_goes_with_its_object_and_a_new_object_at_its_id_is_not_it():
    held: WeakIdentityMap[int] = WeakIdentityMap()
    obj = Unhashable()
    held[obj] = 1
    key = id(obj)
    del obj
    gc.collect()
    assert len(held) == 0
    # Objects made until one lands at the dead one's id: never its entry.
    for _ in range(10_000):
        other = Unhashable()
        if id(other) == key:
            assert held.get(other) is None and held.pop(other) is None
            break
        del other


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
