"""The Journal repository: records every hop and finds them again.

The raw bytes of a hop (``request``, ``response``) are encrypted at rest when
``$BSSBUS_JOURNAL_KEY`` holds a key (:class:`JournalCipher`) as the Journal is opened on a
database (when the bus starts): on every write path (``record``, ``insert``, ``finish``,
``finish_in``; the group-committed writes of store and forward go through ``insert`` and
``finish_in``, which find the key by their connection's engine) and decrypted on every read
(``hops``, ``search``). Rows written without a key stay readable beside encrypted ones.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
from datetime import datetime, timezone
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import bindparam, case, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine

from dao.db import as_utc
from dao.models import JournalEntry

T = JournalEntry.__table__
# Built once: a statement object per call would cost more than the SQL it sends.
_INSERT = insert(T)
_FINISH = update(T).where(T.c.id == bindparam("entry_id"))
COLUMNS = frozenset(c.name for c in T.columns)
RAW_COLUMNS = ("request", "response")
KEY_ENV = "BSSBUS_JOURNAL_KEY"


def now() -> datetime:
    return datetime.now(timezone.utc)


class JournalKeyError(RuntimeError):
    """The journal's key is unusable, or missing (or not the one) for an encrypted row."""


class JournalCipher:
    """Encryption at rest of the journal's raw bytes: AES-256-GCM, keys from $BSSBUS_JOURNAL_KEY.

    The variable holds one key or several, comma-separated, each 32 bytes in URL-safe base64
    (``bssbus journal keygen`` makes one). The first key encrypts; every key listed decrypts,
    so a key is rotated by putting the new one first and keeping the old one after it until
    the rows it encrypted are purged (``housekeeping.journal_retention_days``).

    A stored value is ``MAGIC + 0x01 + key id (4 bytes: the start of the key's SHA-256) +
    nonce (12 bytes) + ciphertext and GCM tag``. Bytes that do not start with MAGIC are a
    plain row (written without a key, or before there was one); plain bytes that happen to
    start with MAGIC are stored as ``MAGIC + 0x00 + bytes``, so no one can make a plain row
    pass for an encrypted one.
    """

    MAGIC = b"\x00bsj"
    SEALED = MAGIC + b"\x01"
    PLAIN = MAGIC + b"\x00"

    def __init__(self, keys: list[bytes] = ()):
        self._keys = {self.key_id(k): AESGCM(k) for k in keys}
        self._current = (self.key_id(keys[0]), AESGCM(keys[0])) if keys else None

    @staticmethod
    def key_id(key: bytes) -> bytes:
        return hashlib.sha256(key).digest()[:4]

    @staticmethod
    def new_key() -> str:
        return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")

    @classmethod
    def parse(cls, text: str | None) -> "JournalCipher":
        """The cipher of a $BSSBUS_JOURNAL_KEY value (None or empty: no encryption)."""
        keys = []
        for n, part in enumerate((p.strip() for p in (text or "").split(",") if p.strip()), 1):
            try:
                key = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != 32:
                raise JournalKeyError(f"{KEY_ENV}: key {n} is not 32 bytes in URL-safe base64 "
                                      "(make one with `bssbus journal keygen`)")
            keys.append(key)
        return cls(keys)

    @property
    def enabled(self) -> bool:
        return self._current is not None

    def seal(self, data: bytes | None) -> bytes | None:
        """What to store for ``data``: encrypted with the first key, or plain without one."""
        if data is None:
            return None
        data = bytes(data)
        if self._current is None:
            return self.PLAIN + data if data.startswith(self.MAGIC) else data
        key_id, aead = self._current
        nonce = os.urandom(12)
        return self.SEALED + key_id + nonce + aead.encrypt(nonce, data, None)

    def open(self, stored: bytes | None, row_id=None) -> bytes | None:
        """The bytes of a stored value; JournalKeyError when it is encrypted and cannot be read."""
        if stored is None:
            return None
        stored = bytes(stored)
        if not stored.startswith(self.MAGIC):
            return stored
        if stored.startswith(self.PLAIN):
            return stored[len(self.PLAIN):]
        if not stored.startswith(self.SEALED):
            raise JournalKeyError(f"journal row {row_id} holds bytes of an unknown format")
        key_id = stored[5:9]
        if not self._keys:
            raise JournalKeyError(f"journal row {row_id} is encrypted at rest: set {KEY_ENV} to the key "
                                  "it was written with")
        aead = self._keys.get(key_id)
        if aead is None:
            raise JournalKeyError(f"journal row {row_id} was encrypted with a key that is not in {KEY_ENV} "
                                  f"(key id {key_id.hex()}): list the old key after the current one")
        try:
            return aead.decrypt(stored[9:21], stored[21:], None)
        except InvalidTag:
            raise JournalKeyError(f"journal row {row_id} does not decrypt with its key: it was altered") from None


_cipher: tuple[str | None, JournalCipher] | None = None


def cipher() -> JournalCipher:
    """The cipher of the current $BSSBUS_JOURNAL_KEY (parsed again only when it changes)."""
    global _cipher
    text = os.environ.get(KEY_ENV) or None
    cached = _cipher
    if cached is None or cached[0] != text:
        cached = _cipher = (text, JournalCipher.parse(text))
    return cached[1]


class Journal:
    """Journal (EIP Message Store): inbound and outbound hops with their raw bytes and keys."""

    def __init__(self, engine: Engine):
        self.engine = engine
        # the key is read once, here, when the bus starts; an unusable one fails now
        self.cipher = cipher()
        # called before each read: the bus writes the rows of reads after their answer
        # (bus.journal_reads), and a search in the same process must see them
        self.before_read: Callable[[], None] = _nothing

    def record(self, more: list[dict] = (), **values) -> int:
        """Insert one hop (and the hops in ``more``, in the same transaction); returns its id."""
        with self.engine.begin() as conn:
            return self.record_in(conn, more, **values)

    def record_in(self, conn: Connection, more: list[dict] = (), **values) -> int:
        """:meth:`record` in the caller's transaction."""
        entry_id = self.insert(conn, values)
        for hop in more:
            self.insert(conn, hop)
        return entry_id

    def insert(self, conn: Connection, values: dict) -> int:
        """Insert one hop in the caller's transaction; returns its id."""
        values.setdefault("started_at", now())
        return conn.execute(_INSERT, _row(values, self.cipher)).inserted_primary_key[0]

    def finish(self, entry_id: int, more: list[dict] = (), **values) -> None:
        """Complete a hop (status, result code, response bytes, timings) and insert the
        hops in ``more`` (the outbound calls it made), in one transaction."""
        with self.engine.begin() as conn:
            self.finish_in(conn, entry_id, more, **values)

    def finish_in(self, conn: Connection, entry_id: int, more: list[dict] = (), **values) -> None:
        """:meth:`finish` in the caller's transaction."""
        values.setdefault("finished_at", now())
        for column in RAW_COLUMNS:
            if column in values:
                values[column] = self.cipher.seal(values[column])
        conn.execute(_FINISH.values(**values), {"entry_id": entry_id})
        for hop in more:
            conn.execute(_INSERT, _row(hop, self.cipher))

    def purge(self, before: datetime) -> int:
        """Delete the hops that started before ``before`` (the journal's retention)."""
        with self.engine.begin() as conn:
            return conn.execute(T.delete().where(T.c.started_at < before)).rowcount

    def hops(self, key: str) -> list[dict]:
        """Every hop of the messages whose TRANS_IDO, PROC_ID or msg_id is ``key``, in time order."""
        self.before_read()
        with self.engine.connect() as conn:
            ids = select(T.c.msg_id).where(or_(T.c.trans_ido == key, T.c.proc_id == key,
                                               T.c.msg_id == key))
            rows = conn.execute(select(T).where(T.c.msg_id.in_(ids))
                                .order_by(T.c.started_at, T.c.id)).mappings().all()
        return _opened(rows, self.cipher)

    #: ``search`` keyword -> the column it matches (each one indexed; see JournalEntry)
    SEARCH_KEYS = {"msisdn": T.c.msisdn, "trans_ido": T.c.trans_ido, "proc_id": T.c.proc_id,
                   "serial": T.c.serial, "order_id": T.c.order_id, "service": T.c.service,
                   "operation": T.c.operation, "peer": T.c.target, "status": T.c.status,
                   "direction": T.c.direction}

    def search_query(self, *, since: datetime | None = None, until: datetime | None = None, limit: int = 50,
                     **keys):
        """The SELECT of :meth:`search` (the bench reads its plan)."""
        unknown = set(keys) - set(self.SEARCH_KEYS)
        if unknown:
            raise TypeError(f"journal search has no key {', '.join(sorted(unknown))}")
        query = select(T).order_by(T.c.started_at.desc(), T.c.id.desc()).limit(limit)
        for name, value in keys.items():
            if value:
                query = query.where(self.SEARCH_KEYS[name] == value)
        if since is not None:
            query = query.where(T.c.started_at >= as_utc(since))
        if until is not None:
            query = query.where(T.c.started_at < as_utc(until))
        return query

    def search(self, *, since: datetime | None = None, until: datetime | None = None, limit: int = 50,
               **keys) -> list[dict]:
        """Hops matching every key given (``msisdn``, ``trans_ido``, ``proc_id``, ``serial``,
        ``order_id``, ``service``, ``operation``, ``peer``: the target, ``status``,
        ``direction``) that started in [since, until), newest first, at most ``limit``."""
        self.before_read()
        query = self.search_query(since=since, until=until, limit=limit, **keys)
        with self.engine.connect() as conn:
            return _opened(conn.execute(query).mappings().all(), self.cipher)

    def peer_activity(self, since: datetime) -> dict[str, dict]:
        """Per peer called since ``since`` (outbound hops): ``{"calls", "failed", "last_ok"}``;
        what the console's health page shows. Read from the (direction, started_at) index."""
        self.before_read()
        failed = func.sum(case((T.c.status != "ok", 1), else_=0))
        last_ok = func.max(case((T.c.status == "ok", T.c.started_at), else_=None))
        query = (select(T.c.target, func.count(), failed, last_ok)
                 .where(T.c.direction == "out", T.c.started_at >= as_utc(since)).group_by(T.c.target))
        with self.engine.connect() as conn:
            return {target: {"calls": calls, "failed": int(bad or 0), "last_ok": as_utc(ok) if ok else None}
                    for target, calls, bad, ok in conn.execute(query) if target}

    def trace_query(self, key: str):
        """The SELECT of :meth:`hops` without the raw bytes (what a trace shows)."""
        ids = select(T.c.msg_id).where(or_(T.c.trans_ido == key, T.c.proc_id == key, T.c.msg_id == key))
        columns = [c for c in T.columns if c.name not in RAW_COLUMNS]
        return select(*columns).where(T.c.msg_id.in_(ids)).order_by(T.c.started_at, T.c.id)

    def trace(self, key: str) -> list[dict]:
        """Every hop of every message of the flow ``key`` (a PROC_ID, a TRANS_IDO or a message
        id) in time order, without their raw bytes (nothing to decrypt)."""
        self.before_read()
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(self.trace_query(key)).mappings()]


def _nothing() -> None:
    return None


def _opened(rows, crypt: JournalCipher) -> list[dict]:
    """Rows as dicts with their raw bytes decrypted (JournalKeyError if one cannot be)."""
    out = []
    for r in rows:
        row = dict(r)
        for column in RAW_COLUMNS:
            row[column] = crypt.open(row.get(column), row.get("id"))
        out.append(row)
    return out


def _row(values: dict, crypt: JournalCipher) -> dict:
    """Every column present (None where not given), so one compiled INSERT serves every hop;
    the raw bytes sealed (encrypted when there is a key)."""
    unknown = set(values) - COLUMNS
    if unknown:
        raise TypeError(f"journal has no column {', '.join(sorted(unknown))}")
    row = {name: values.get(name) for name in COLUMNS if name != "id"}
    for column in RAW_COLUMNS:
        row[column] = crypt.seal(row[column])
    return row
