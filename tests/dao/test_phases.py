"""The cut-over table on SQLite and PostgreSQL: seeded from config, changed and audited."""
from __future__ import annotations

import pytest

from config.settings import ConfigError
from dao.db import open_database
from dao.phases import PhaseStore, PhaseTable


def test_seed_set_history_and_refresh(db_url):
    engine = open_database(db_url)
    store = PhaseStore(engine)
    store.seed({"51": 2, "11": 3})
    store.seed({"51": 3, "34": 2})       # config changes never override the table, new provinces join
    assert store.load() == {"51": 2, "11": 3, "34": 2}
    table = PhaseTable(store, refresh_seconds=0)
    assert table.current()["51"] == 2
    assert store.set("51", 3, "alice", "cut-over") == 2
    assert table.current()["51"] == 3
    store.set("51", 2, "bob")
    assert [(h["old_phase"], h["new_phase"], h["changed_by"]) for h in store.history("51")] == [
        (3, 2, "bob"), (2, 3, "alice")]
    with pytest.raises(ConfigError, match="'42'"):
        store.set("42", 3, "alice")
    with pytest.raises(ConfigError, match="phase 4"):
        store.set("51", 4, "alice")
    engine.dispose()


def test_a_slow_refresh_keeps_the_snapshot(db_url):
    engine = open_database(db_url)
    store = PhaseStore(engine)
    store.seed({"51": 2})
    table = PhaseTable(store, refresh_seconds=3600)
    store.set("51", 3, "alice")
    assert table.current()["51"] == 2, "a process re-reads the table only when its refresh is due"
    engine.dispose()


def test_processes_seeding_at_once_all_start(db_url):
    """gunicorn's workers start their buses together, each seeding the cut-over table: none
    may fail because another inserted a province between its read and its insert."""
    from concurrent.futures import ThreadPoolExecutor
    phases = {f"{n:02d}": 2 for n in range(10, 40)}
    for _ in range(5):
        engine = open_database(db_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM province_phase")
        stores = [PhaseStore(engine) for _ in range(6)]
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda s: s.seed(phases), stores))   # raises here if one of them failed
        assert PhaseStore(engine).load() == phases
        engine.dispose()
