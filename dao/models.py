"""SQLAlchemy 2 models. Names and lengths stay within Oracle's limits (30-character
identifiers, VARCHAR2 lengths given everywhere, identity columns for keys)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (BigInteger, DateTime, Float, Identity, Index, Integer, LargeBinary, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    pass


class JournalEntry(Base):
    """The Journal (EIP Wire Tap + Message Store): one row a hop of a message.

    ``direction`` is ``in`` for the request a caller sent to the bus, ``out`` for the
    bus's call to a peer (each attempt of a stored message) and ``adm`` for what happened to it
    besides (a dead letter, its replay or discard, an unmasked view); the rows of one message
    share ``msg_id``. ``serial`` (a payment's or reversal's BANK_SERIAL, a top-up's TOPUP_SERIAL)
    and ``order_id`` (ORDER_ID) are the business keys operators search by (``bssbus journal
    search``). The composite indexes ending in ``started_at`` answer "newest first" searches by
    peer, status, service, operation or direction, within a time range or not, from the index alone.
    ``amount`` (fen: a payment's or reversal's AMOUNT, a top-up's AMOUNT as the billing answered it)
    and ``work_state`` (a work-order report's WORK_STATE) are what `bssbus stats` adds up, so it
    never reads (or decrypts) the raw bytes.
    """

    __tablename__ = "journal"

    id: Mapped[int] = mapped_column(ID, Identity(), primary_key=True)
    consumer: Mapped[str | None] = mapped_column(String(40))   # the authenticated caller (bus/security.py)
    msg_id: Mapped[str] = mapped_column(String(32), nullable=False)
    direction: Mapped[str] = mapped_column(String(3), nullable=False)
    service: Mapped[str | None] = mapped_column(String(40))
    operation: Mapped[str | None] = mapped_column(String(40))
    trans_ido: Mapped[str | None] = mapped_column(String(32))
    proc_id: Mapped[str | None] = mapped_column(String(40))
    msisdn: Mapped[str | None] = mapped_column(String(20))
    serial: Mapped[str | None] = mapped_column(String(32))
    order_id: Mapped[str | None] = mapped_column(String(32))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    work_state: Mapped[str | None] = mapped_column(String(2))
    province: Mapped[str | None] = mapped_column(String(4))
    source: Mapped[str | None] = mapped_column(String(40))
    target: Mapped[str | None] = mapped_column(String(40))
    route: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    rsp_code: Mapped[str | None] = mapped_column(String(10))
    fault_code: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(String(1000))
    request: Mapped[bytes | None] = mapped_column(LargeBinary)
    response: Mapped[bytes | None] = mapped_column(LargeBinary)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    elapsed_ms: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        Index("ix_journal_trans_ido", "trans_ido"),
        Index("ix_journal_proc_id", "proc_id"),
        Index("ix_journal_msisdn", "msisdn"),
        Index("ix_journal_msg_id", "msg_id"),
        Index("ix_journal_started_at", "started_at"),
        Index("ix_journal_serial", "serial"),
        Index("ix_journal_order_id", "order_id"),
        Index("ix_journal_target_started", "target", "started_at"),
        Index("ix_journal_status_started", "status", "started_at"),
        Index("ix_journal_service_started", "service", "started_at"),
        Index("ix_journal_op_started", "operation", "started_at"),
        Index("ix_journal_dir_started", "direction", "started_at"),
    )


class ProvincePhase(Base):
    """The cut-over table: the phase each province is in now (2: its own Billing, 3: HQ Billing).

    Seeded from config/bus.yaml's ``provinces`` for provinces it does not hold yet; changed at
    run time by ``bssbus phase set``; every bus process re-reads it every few seconds.
    """

    __tablename__ = "province_phase"

    province: Mapped[str] = mapped_column(String(4), primary_key=True)
    phase: Mapped[int] = mapped_column(Integer, nullable=False)
    changed_by: Mapped[str] = mapped_column(String(64), nullable=False)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class PhaseChange(Base):
    """The audit of the cut-over table: who moved which province from which phase, and when."""

    __tablename__ = "phase_change"

    id: Mapped[int] = mapped_column(ID, Identity(), primary_key=True)
    province: Mapped[str] = mapped_column(String(4), nullable=False)
    old_phase: Mapped[int | None] = mapped_column(Integer)
    new_phase: Mapped[int] = mapped_column(Integer, nullable=False)
    changed_by: Mapped[str] = mapped_column(String(64), nullable=False)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    reason: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (Index("ix_phase_change_province", "province"),)


class IdempotencyKey(Base):
    """IdempotentConsumer's memory: the key of a message, its state (``pending`` while the
    first one is being handled, ``done`` after) and the first answer, kept until it expires."""

    __tablename__ = "idempotency_key"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    service: Mapped[str] = mapped_column(String(40), nullable=False)
    operation: Mapped[str] = mapped_column(String(40), nullable=False)
    status: Mapped[str] = mapped_column(String(8), nullable=False)
    msg_id: Mapped[str] = mapped_column(String(32), nullable=False)
    reply: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (Index("ix_idempotency_key_expires_at", "expires_at"),)


class OutboxEntry(Base):
    """The Outbox (store and forward): a one-way message accepted for a peer, until the
    Forwarder delivers it (``delivered``, with the peer's RSP_CODE) or its attempts are spent
    (``dead``: the DeadLetterChannel) and an operator replays or discards it (``discarded``).
    ``order_key`` (the user's number) keeps one user's messages in order."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(ID, Identity(), primary_key=True)
    msg_id: Mapped[str] = mapped_column(String(32), nullable=False)
    service: Mapped[str] = mapped_column(String(40), nullable=False)
    operation: Mapped[str] = mapped_column(String(40), nullable=False)
    trans_ido: Mapped[str | None] = mapped_column(String(32))
    peer_key: Mapped[str] = mapped_column(String(40), nullable=False)
    peer_name: Mapped[str] = mapped_column(String(40), nullable=False)
    province: Mapped[str | None] = mapped_column(String(4))
    order_key: Mapped[str] = mapped_column(String(60), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(10), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rsp_code: Mapped[str | None] = mapped_column(String(8))

    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),
                      Index("ix_outbox_order_key", "order_key", "status", "id"),
                      Index("ix_outbox_msg_id", "msg_id"))


class JobLease(Base):
    """Who may run a scheduled job until when: several processes and nodes share one
    database, and each leased job runs on one of them at a time."""

    __tablename__ = "job_lease"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    owner: Mapped[str] = mapped_column(String(80), nullable=False)
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_result: Mapped[str | None] = mapped_column(String(200))


class SecurityNonce(Base):
    """A WS-Security UsernameToken nonce already accepted (bus/security.py): a replay of its
    token is refused by every worker and node; purged once the token could not pass anyway."""

    __tablename__ = "security_nonce"

    consumer: Mapped[str] = mapped_column(String(40), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(100), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (Index("ix_security_nonce_expires_at", "expires_at"),)


class ReconBatch(Base):
    """One bank reconciliation file (对账文件) and what became of it (bus/reconcile.py).

    ``state``: ``comparing`` (read, being compared with the billings), ``posting`` (the
    corrections are being handed to the outbox), ``done``, ``rejected`` (refused whole, with
    ``reason``; nothing posted) or ``abandoned`` (given up by an operator before it posted). ``day_key`` (bank and accounting day) and ``md5_key`` are set
    on an accepted file only, so a second file for one day, or the same file again, is refused
    by the database itself, on every process and node."""

    __tablename__ = "recon_batch"

    id: Mapped[int] = mapped_column(ID, Identity(), primary_key=True)
    bank_code: Mapped[str | None] = mapped_column(String(10))
    acct_date: Mapped[str | None] = mapped_column(String(8))
    file_name: Mapped[str] = mapped_column(String(200), nullable=False)
    md5: Mapped[str | None] = mapped_column(String(32))
    day_key: Mapped[str | None] = mapped_column(String(20), unique=True)
    md5_key: Mapped[str | None] = mapped_column(String(32), unique=True)
    state: Mapped[str] = mapped_column(String(10), nullable=False)
    reason: Mapped[str | None] = mapped_column(String(1000))
    lines: Mapped[int | None] = mapped_column(BigInteger)
    amount: Mapped[int | None] = mapped_column(BigInteger)
    balanced_count: Mapped[int | None] = mapped_column(BigInteger)
    balanced_sum: Mapped[int | None] = mapped_column(BigInteger)
    bank_only_count: Mapped[int | None] = mapped_column(BigInteger)
    bank_only_sum: Mapped[int | None] = mapped_column(BigInteger)
    billing_only_count: Mapped[int | None] = mapped_column(BigInteger)
    billing_only_sum: Mapped[int | None] = mapped_column(BigInteger)
    mismatch_count: Mapped[int | None] = mapped_column(BigInteger)
    mismatch_sum: Mapped[int | None] = mapped_column(BigInteger)
    unlisted_count: Mapped[int | None] = mapped_column(BigInteger)   # lines no billing could list (legacy)
    unlisted_sum: Mapped[int | None] = mapped_column(BigInteger)
    posted: Mapped[int | None] = mapped_column(BigInteger)
    held: Mapped[int | None] = mapped_column(BigInteger)
    result_file: Mapped[str | None] = mapped_column(String(300))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ReconItem(Base):
    """A transaction of a reconciliation batch that did not balance, and its action: ``post``
    (bank has it, billing lacks it: posted to billing, 补缴), ``reverse`` (billing has it, bank
    lacks it: reversed in billing), ``hold`` (for a person) or ``none``. ``state``: ``pending``,
    ``posted`` (in the outbox as ``msg_id``), ``held`` or ``failed`` (refused by the bus:
    ``detail`` says why, and a person takes it from there)."""

    __tablename__ = "recon_item"

    id: Mapped[int] = mapped_column(ID, Identity(), primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    bank_serial: Mapped[str] = mapped_column(String(32), nullable=False)
    outcome: Mapped[str] = mapped_column(String(12), nullable=False)
    action: Mapped[str] = mapped_column(String(8), nullable=False)
    state: Mapped[str] = mapped_column(String(8), nullable=False)
    txn_time: Mapped[str | None] = mapped_column(String(14))
    msisdn: Mapped[str | None] = mapped_column(String(11))
    province: Mapped[str | None] = mapped_column(String(4))
    bank_amount: Mapped[int | None] = mapped_column(BigInteger)
    billing_amount: Mapped[int | None] = mapped_column(BigInteger)
    txn_type: Mapped[str] = mapped_column(String(1), nullable=False)
    orig_serial: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(300))
    trans_ido: Mapped[str | None] = mapped_column(String(32))
    msg_id: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (Index("ix_recon_item_batch", "batch_id", "state"),)


class CdrFile(Base):
    """A CDR file the bus distributes (bus/cdr.py): its idempotency key (file name + MD5) and
    the state of its distribution, ``splitting`` (temporary files only) -> ``publishing``
    (every temporary file complete; renamed one by one) -> ``done``. ``summary`` holds, as
    JSON, each target's count, sum and files, so a publishing interrupted by a crash is
    finished by the next run."""

    __tablename__ = "cdr_file"

    id: Mapped[int] = mapped_column(ID, Identity(), primary_key=True)
    file_name: Mapped[str] = mapped_column(String(200), nullable=False)
    md5: Mapped[str] = mapped_column(String(32), nullable=False)
    state: Mapped[str] = mapped_column(String(12), nullable=False)
    source_path: Mapped[str] = mapped_column(String(1000), nullable=False)
    out_dir: Mapped[str] = mapped_column(String(1000), nullable=False)
    owner: Mapped[str] = mapped_column(String(80), nullable=False)
    run_id: Mapped[str | None] = mapped_column(String(32))   # the run holding the row (temporary names carry it)
    records: Mapped[int | None] = mapped_column(BigInteger)
    rejects: Mapped[int | None] = mapped_column(BigInteger)
    summary: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("file_name", "md5", name="uq_cdr_file_name_md5"),
                      Index("ix_cdr_file_md5", "md5"))
