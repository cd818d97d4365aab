"""The statistics queries: one SQL aggregate a figure, grouped by local day and province.

Each figure is counted from the journal's keys alone (operation, direction, status, RSP_CODE,
province, target and the ``amount`` and ``work_state`` columns of migration 0012), never from
the raw bytes, within [start, end) on ``started_at``, so each query reads the rows that the
(operation, started_at) or (status, started_at) index of migration 0011 finds for the range.

The local day of a hop is computed in the database, per dialect (:class:`local_day`): SQLite
``date(started_at, '+480 minutes')`` (SQLAlchemy stores UTC there as text), PostgreSQL
``CAST(timezone(INTERVAL '+480 minutes', started_at) AS DATE)`` (independent of the session's
TimeZone), Oracle ``TO_CHAR(SYS_EXTRACT_UTC(started_at) + NUMTODSINTERVAL(480, 'MINUTE'),
'YYYY-MM-DD')``. A day is a fixed UTC offset's (config ``stats.timezone``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import String

from dao.db import as_utc
from dao.models import JournalEntry

T = JournalEntry.__table__


class local_day(FunctionElement):
    """The date (``YYYY-MM-DD``) of a UTC timestamp column at a fixed offset of whole minutes."""

    type = String()
    inherit_cache = True
    # the offset is written into the SQL: it is part of the statement's cache key
    _traverse_internals = FunctionElement._traverse_internals + [("minutes", InternalTraversal.dp_plain_obj)]

    def __init__(self, column, minutes: int):
        self.minutes = int(minutes)   # an int: safe to write into the SQL
        super().__init__(column)


@compiles(local_day, "sqlite")
def _day_sqlite(element, compiler, **kw):
    column = compiler.process(list(element.clauses)[0], **kw)
    return f"date({column}, '{element.minutes:+d} minutes')"


@compiles(local_day, "postgresql")
def _day_postgresql(element, compiler, **kw):
    column = compiler.process(list(element.clauses)[0], **kw)
    return f"to_char(timezone(INTERVAL '{element.minutes:+d} minutes', {column}), 'YYYY-MM-DD')"


@compiles(local_day, "oracle")
def _day_oracle(element, compiler, **kw):
    column = compiler.process(list(element.clauses)[0], **kw)
    return (f"TO_CHAR(SYS_EXTRACT_UTC({column}) + NUMTODSINTERVAL({element.minutes}, 'MINUTE'), "
            "'YYYY-MM-DD')")


@compiles(local_day)
def _day_other(element, compiler, **kw):
    raise CompileError(f"bssbus stats cannot bucket days on {compiler.dialect.name}: "
                       "SQLite, PostgreSQL and Oracle are supported")


class unindexed(FunctionElement):
    """A column that must not pick the index (SQLite's unary ``+``): SQLite plans without
    statistics (the bus never runs ANALYZE) and would read a day's hops through (direction,
    started_at), half the journal, rather than through (operation, started_at)."""

    inherit_cache = True

    def __init__(self, column):
        self.type = column.type
        super().__init__(column)


@compiles(unindexed)
def _unindexed(element, compiler, **kw):
    return compiler.process(list(element.clauses)[0], **kw)


@compiles(unindexed, "sqlite")
def _unindexed_sqlite(element, compiler, **kw):
    return "+" + compiler.process(list(element.clauses)[0], **kw)


DIRECTION, STATUS, SERVICE = unindexed(T.c.direction), unindexed(T.c.status), unindexed(T.c.service)


# -- what each figure counts --------------------------------------------------------------------
def _answered_ok() -> ColumnElement:
    """An inbound hop the bus answered with success: the peer's RSP_CODE 0000 (a repeat answered
    from memory is ``duplicate`` and is not counted again)."""
    return and_(STATUS == "ok", T.c.rsp_code == "0000")


def _taken() -> ColumnElement:
    """An inbound hop the bus took: stored for delivery (``accepted``) or answered with 0000."""
    return or_(STATUS == "accepted", _answered_ok())


@dataclass(frozen=True)
class Figure:
    """One statistic: its name, the operation it counts, and how (``money``: count and sum of
    ``amount``; ``distinct``: distinct orders; ``count``: hops)."""

    name: str
    service: str
    operation: str
    kind: str
    description: str

    def where(self) -> ColumnElement:
        clauses = [T.c.operation == self.operation, SERVICE == self.service, DIRECTION == "in"]
        if self.name == "work_orders_completed":
            clauses += [_taken(), T.c.work_state == "3"]
        elif self.name == "orders":
            clauses.append(_taken())
        else:
            clauses.append(_answered_ok())
        return and_(*clauses)


FIGURES = (
    Figure("orders", "OrderSync", "SyncOrder", "distinct",
           "distinct ORDER_IDs of SyncOrder requests the bus took (e-sales' order answered 0000 by HQ CRM, "
           "HQ CRM's order accepted for the province CRM): an order counts once"),
    Figure("work_orders_completed", "Provisioning", "ReportWorkOrderResult", "count",
           "ReportWorkOrderResult requests accepted with WORK_STATE 3 (done): a province CRM reporting "
           "a work order done"),
    Figure("payments", "BankPayment", "Pay", "money", "Pay requests answered RSP_CODE 0000, and their AMOUNT"),
    Figure("reversals", "BankPayment", "Reverse", "money", "Reverse requests answered RSP_CODE 0000, and their AMOUNT"),
    Figure("topups", "TopUp", "TopUp", "money",
           "TopUp requests answered RSP_CODE 0000, and the AMOUNT the billing answered"),
)
FAULT_STATUSES = ("fault", "error")


class StatsQueries:
    """The statistics of the journal on ``engine``: each figure by (local day, province)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @staticmethod
    def _range(query, start: datetime, end: datetime):
        return query.where(T.c.started_at >= as_utc(start), T.c.started_at < as_utc(end))

    def figure_query(self, figure: Figure, start: datetime, end: datetime, minutes: int, province: str | None = None):
        """The SELECT of one figure: (day, province, n[, fen, priced]) rows."""
        day = local_day(T.c.started_at, minutes)
        if figure.kind == "distinct":
            measures = [func.count(func.distinct(func.coalesce(T.c.order_id, T.c.msg_id))).label("n")]
        elif figure.kind == "money":
            measures = [func.count().label("n"), func.sum(T.c.amount).label("fen"),
                        func.count(T.c.amount).label("priced")]
        else:
            measures = [func.count().label("n")]
        query = select(day.label("day"), T.c.province, *measures).where(figure.where())
        if province:
            query = query.where(T.c.province == province)
        return self._range(query, start, end).group_by(day, T.c.province)

    def faults_query(self, start: datetime, end: datetime, minutes: int, province: str | None = None):
        """The SELECT of the faults by peer: (day, province, target, n) of the failed calls and
        delivery attempts (outbound hops ``fault`` or ``error``)."""
        day = local_day(T.c.started_at, minutes)
        query = (select(day.label("day"), T.c.province, T.c.target, func.count().label("n"))
                 .where(T.c.status.in_(FAULT_STATUSES), DIRECTION == "out"))
        if province:
            query = query.where(T.c.province == province)
        return self._range(query, start, end).group_by(day, T.c.province, T.c.target)

    def queries(self, start: datetime, end: datetime, minutes: int, province: str | None = None) -> dict:
        """Every query by figure name (``faults`` last): what :meth:`collect` runs (the bench reads
        their plans)."""
        out = {f.name: self.figure_query(f, start, end, minutes, province) for f in FIGURES}
        out["faults"] = self.faults_query(start, end, minutes, province)
        return out

    def collect(self, start: datetime, end: datetime, minutes: int, province: str | None = None) -> dict[str, list]:
        """Each figure's rows (as dicts) for hops that started in [start, end), days at UTC+``minutes``."""
        with self.engine.connect() as conn:
            return {name: [_plain(r) for r in conn.execute(query).mappings()]
                    for name, query in self.queries(start, end, minutes, province).items()}


def _plain(row) -> dict:
    row = dict(row)
    day = row["day"]
    row["day"] = day.isoformat() if isinstance(day, date) else str(day)
    for key in ("n", "fen", "priced"):
        if key in row:
            row[key] = int(row[key] or 0)
    return row

