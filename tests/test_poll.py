"""pwgen.poll: the one wait loop (counts calls, never asserts on elapsed time)."""

from pwgen.poll import poll


def test_returns_the_first_value_that_is_not_none_or_false() -> None:
    answers = iter([None, False, 0, "ready", "later"])
    assert poll(lambda: next(answers), 5, interval=0.001) == 0  # 0 is a value, not a miss


def test_gives_none_after_the_timeout_having_looked_more_than_once() -> None:
    calls: list[int] = []

    def never() -> bool:
        calls.append(1)
        return False

    assert poll(never, 0.05, interval=0.01) is None
    assert len(calls) >= 2  # the first look and one at the deadline at least


def test_zero_timeout_is_a_single_look() -> None:
    calls: list[int] = []

    def once() -> None:
        calls.append(1)

    assert poll(once, 0) is None
    assert calls == [1]
