"""The bus's logs: plain text lines (the default) or one JSON object a line (``logging.format: json``).

A JSON line holds ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and
``message``, and, when it was written while a message was being handled, that message's
``TRANS_IDO`` and ``PROC_ID`` (:func:`about`, set around the handling of a request and of each
outbox delivery; contextvars, so each thread has its own). A traceback goes in ``exc``. The
message and the traceback are masked as every log record of the process is (bus/privacy.py:
the record factory masks a record when it is made, before any formatter sees it).
"""
from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import datetime, timezone

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: (TRANS_IDO, PROC_ID) of the message this thread is handling, or None.
_current: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("bssbus_message", default=None)


def about(message) -> contextvars.Token:
    """Log records written from now on in this context are about ``message`` (a bus Message);
    give the token to :func:`done` when it is handled."""
    return _current.set((message.trans_ido, message.proc_id))


def done(token: contextvars.Token | None = None) -> None:
    """The message is handled: records are about no message any more."""
    try:
        if token is not None:
            _current.reset(token)
            return
    except ValueError:   # set in another context (a thread of a pool): nothing to restore
        pass
    _current.set(None)


def current() -> tuple | None:
    return _current.get()


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message (+ TRANS_IDO, PROC_ID, exc)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        ids = getattr(record, "bssbus_ids", None) or _current.get()
        if ids:
            trans_ido, proc_id = ids
            if trans_ido:
                entry["TRANS_IDO"] = trans_ido
            if proc_id:
                entry["PROC_ID"] = proc_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_format(settings) -> str:
    """``logging.format`` of ``settings``: text or json (ConfigError otherwise)."""
    from config.settings import ConfigError
    value = str((settings.section("logging") or {}).get("format", "text") or "text").strip().lower()
    if value not in FORMATS:
        raise ConfigError(f"logging.format: {value!r} is not a log format; use one of {', '.join(FORMATS)}")
    return value


def configure(settings, stream=None) -> str:
    """Format every handler of the root logger as ``logging.format`` says (the handler made by
    the command line writes to stderr); returns the format. Personal data is masked either way."""
    from bus import privacy
    privacy.configure(settings)
    kind = log_format(settings)
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(stream or sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter() if kind == "json" else logging.Formatter(TEXT_FORMAT))
    return kind
