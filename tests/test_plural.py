from switchtrace.plural import count


def test_count_puts_the_noun_in_the_plural_unless_there_is_one():
    assert [count(n, "loop") for n in (0, 1, 2)] == ["0 loops", "1 loop", "2 loops"]
    assert count(1, "switch", "switches") == "1 switch"
    assert count(3, "switch", "switches") == "3 switches"
