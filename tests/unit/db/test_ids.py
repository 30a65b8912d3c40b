"""UUIDv7 identifiers: version, variant, order, embedded time, uniqueness across threads."""

from __future__ import annotations

import itertools
import threading
import time
import uuid

from waiaas.ids import new_id, uuid7, uuid7_time_ms


def test_new_id_is_a_canonical_uuid_version_7_rfc_variant() -> None:
    """new_id() is a 36-character lowercase UUID string of version 7, RFC 9562 variant."""
    value = new_id()
    parsed = uuid.UUID(value)
    assert str(parsed) == value
    assert len(value) == 36
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_ten_thousand_ids_strictly_increase_as_uuids_and_strings() -> None:
    """IDs made in a tight loop are strictly increasing, compared as UUIDs and as text."""
    ids = [new_id() for _ in range(10_000)]
    as_uuids = [uuid.UUID(i) for i in ids]
    assert all(a < b for a, b in itertools.pairwise(as_uuids))
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in as_uuids)


def test_embedded_time_matches_the_clock() -> None:
    """uuid7_time_ms() of a fresh id is within a second of time.time()."""
    before = time.time() * 1000
    value = new_id()
    after = time.time() * 1000
    assert before - 1000 <= uuid7_time_ms(value) <= after + 1000
    assert uuid7_time_ms(uuid.UUID(value)) == uuid7_time_ms(value)


def test_uuid7_returns_uuid_objects() -> None:
    """uuid7() returns a uuid.UUID whose string form is what new_id() would give."""
    value = uuid7()
    assert isinstance(value, uuid.UUID)
    assert value.version == 7


def test_threads_make_unique_ids_each_increasing() -> None:
    """Eight threads making ids at once never collide; each thread's ids increase."""
    per_thread: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(len(per_thread))

    def work(out: list[str]) -> None:
        start.wait()
        for _ in range(2_000):
            out.append(new_id())

    threads = [threading.Thread(target=work, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for out in per_thread for i in out]
    assert len(everything) == len(set(everything)) == 16_000
    for out in per_thread:
        assert out == sorted(out)
