"""One contract suite for every KeyValueStore backend, plus codecs and pinned store names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from faust.stores.rocksdb import RocksDBOptions
from hypothesis import given, settings
from hypothesis import strategies as st

from state.codec import VersionedCodec, json_codec
from state.errors import StateError, StateVersionError
from state.memory import MemoryStore
from state.names import STORES, check_name
from state.rocks import RocksStore
from state.store import KeyValueStore
from topology.faust_eos import TableStore

NAME = "lattice.baselines.v1"
Factory = Callable[[Path], KeyValueStore]


class _FaustTable:
    """What TableStore uses of a Faust table: its name and its per-partition RocksDB, opened
    with Faust's own options (rocksdict, raw mode). The Faust worker path itself is proven by
    tests/integration/test_lattice_worker.py."""

    def __init__(self, path: Path) -> None:
        self.name = NAME
        self.data = self
        self._db = RocksDBOptions(use_rocksdict=True).open(path / "faust-table-3.db")

    def _db_for_partition(self, partition: int) -> Any:
        assert partition == 3
        return self._db


def _faust_table_store(d: Path) -> KeyValueStore:
    store = TableStore(_FaustTable(d), 3)
    typed: KeyValueStore = store
    return typed


BACKENDS: dict[str, Factory] = {
    "memory": lambda _d: MemoryStore(NAME),
    "rocksdb": lambda d: RocksStore(d, NAME),
    "faust-table": _faust_table_store,
}


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyValueStore]:
    s = BACKENDS[request.param](tmp_path)
    yield s
    s.close()


def test_is_a_key_value_store(store):
    assert isinstance(store, KeyValueStore)
    assert store.name == NAME


def test_get_put_delete(store):
    assert store.get(b"a") is None
    store.put(b"a", b"1")
    assert store.get(b"a") == b"1"
    store.put(b"a", b"2")
    assert store.get(b"a") == b"2"
    store.delete(b"a")
    assert store.get(b"a") is None
    store.delete(b"never")  # no error


def test_apply_writes_and_deletes_together(store):
    store.put(b"gone", b"x")
    store.apply({b"k1": b"v1", b"k2": b"v2", b"gone": None})
    assert (store.get(b"k1"), store.get(b"k2"), store.get(b"gone")) == (b"v1", b"v2", None)


def test_scan_is_ordered_and_prefixed(store):
    for key in (b"b:2", b"a:1", b"b:1", b"c", b"b:10"):
        store.put(key, key.upper())
    assert [k for k, _ in store.scan(b"b:")] == [b"b:1", b"b:10", b"b:2"]
    assert [k for k, _ in store.scan()] == [b"a:1", b"b:1", b"b:10", b"b:2", b"c"]
    assert dict(store.scan(b"a"))[b"a:1"] == b"A:1"


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.binary(min_size=1, max_size=8), st.binary(max_size=16), max_size=20))
def test_backends_agree(tmp_path_factory, pairs):
    stores = [f(tmp_path_factory.mktemp("agree")) for f in BACKENDS.values()]
    try:
        for s in stores:
            s.apply(dict(pairs))
        scans = [list(s.scan()) for s in stores]
        assert all(scan == sorted(pairs.items()) for scan in scans)
    finally:
        for s in stores:
            s.close()


def test_rocksdb_keeps_data_across_reopen(tmp_path):
    first = RocksStore(tmp_path, NAME)
    first.apply({b"k": b"v"})
    first.close()
    again = RocksStore(tmp_path, NAME)
    assert again.get(b"k") == b"v"
    again.close()


def test_codec_has_a_version_byte_and_round_trips():
    codec = json_codec(NAME, version=3)
    data = codec.encode({"b": 1, "a": [1.5, None]})
    assert data[0] == 3
    assert data[1:] == b'{"a":[1.5,null],"b":1}'
    assert codec.decode(data) == {"a": [1.5, None], "b": 1}


def test_codec_migrates_forward_and_refuses_what_it_cannot_read():
    def v1_to_v2(payload: bytes) -> bytes:
        return payload + b"!"

    codec = VersionedCodec(NAME, 2, lambda s: s.encode(), lambda b: b.decode(), {1: v1_to_v2})
    assert codec.decode(b"\x01hello") == "hello!"
    assert codec.decode(codec.encode("x")) == "x"
    with pytest.raises(StateVersionError, match="newer than this code"):
        codec.decode(b"\x03x")
    strict = VersionedCodec(NAME, 2, lambda s: s.encode(), lambda b: b.decode())
    with pytest.raises(StateVersionError, match="no migration from state version 1"):
        strict.decode(b"\x01x")
    with pytest.raises(StateVersionError, match="empty"):
        strict.decode(b"")


def test_store_names_are_pinned():
    # A renamed store starts from empty state: change this list only on purpose.
    assert STORES == (
        "lattice.accumulators.v1",
        "lattice.baselines.v1",
        "lattice.sketches.v1",
        "lattice.watermarks.v1",
        "market.state.v1",
        "detect.state.v1",
    )
    assert check_name(NAME) == NAME
    with pytest.raises(StateError, match=r"not <stage>\.<what>\.v<N>"):
        check_name("Baselines")
    with pytest.raises(StateError, match="not declared"):
        check_name("lattice.other.v1")


def test_faust_table_store_queues_its_changelog(tmp_path):
    store = TableStore(_FaustTable(tmp_path), 3)
    store.apply({b"a": b"1", b"b": b"2"})
    store.delete(b"a")
    assert store.drain() == [(b"a", b"1"), (b"b", b"2"), (b"a", None)]
    assert store.drain() == []
    assert list(store.scan()) == [(b"b", b"2")]
