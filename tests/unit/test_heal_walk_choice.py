"""Which walk a table gets, from the server's version and its indexes, and how tid-range slices are sized."""

import pytest

from parel_monitoring.heal.tables import (
    EXPIRES_INDEX,
    MAX_GROWTH,
    PRIMARY_KEY,
    TARGET_BATCH_S,
    TID_RANGE,
    UNIQUE_KEY,
    choose_strategy,
    next_span,
)


@pytest.mark.parametrize(
    ("version", "indexed", "key_kind", "strategy"),
    [
        (150020, True, UNIQUE_KEY, EXPIRES_INDEX),  # the index wins on every server
        (120000, True, None, EXPIRES_INDEX),
        (150020, False, UNIQUE_KEY, TID_RANGE),  # the Prisma "Session": no index, a random unique token
        (140000, False, PRIMARY_KEY, TID_RANGE),  # 14.0 has Tid Range Scans
        (140000, False, None, TID_RANGE),  # no key needed
        (139999, False, UNIQUE_KEY, UNIQUE_KEY),  # 13: the key walk
        (130015, False, PRIMARY_KEY, PRIMARY_KEY),
        (130015, False, None, None),  # nothing to walk: the caller reports it
    ],
)
def test_the_walk_follows_the_server_version_and_the_index(version, indexed, key_kind, strategy):
    assert choose_strategy(version, indexed, key_kind) == strategy


def test_a_slice_grows_at_most_by_max_growth_when_fast_and_empty():
    assert next_span(100, 100, 0, 0.001, 5000) == int(100 * MAX_GROWTH)
    assert next_span(100, 100, 0, 0.0, 5000) == int(100 * MAX_GROWTH)  # a clock that did not move


def test_a_slow_slice_shrinks_the_next_to_the_target_time():
    assert next_span(1000, 1000, 0, TARGET_BATCH_S * 4, 5000) == 250


def test_a_dense_slice_shrinks_the_next_to_batch_rows():
    assert next_span(100, 100, 10_000, 0.001, 5000) == 50  # 100 rows a page: 50 pages hold 5,000


def test_the_last_shorter_slice_is_sized_by_what_it_read_and_never_below_one_page():
    assert next_span(100, 10, 5000, 0.001, 5000) == 10
    assert next_span(4, 1, 300, 0.5, 1) == 1
