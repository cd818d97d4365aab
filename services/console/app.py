"""The web console: server-rendered pages for the operators of the bus, under ``/console/``.

Pages: health (each peer's circuit breaker as this process sees it, queue depth, dead letters,
error rate and last success), the effective route table with each province's phase, journal
search, a message's or flow's trace with its XML pretty-printed and personal data masked, the
dead letters with replay and discard, and the reconciliation batches with their discrepancies.

Who may look: an operator of ``operators:`` (bus/operators.py) with a console password
(``BSSBUS_OPERATOR_<NAME>_PASSWORD`` or ``password_hash`` in the secrets file). Logging in gives
a session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS, path ``/console/``) signed with
HMAC-SHA256 by ``$BSSBUS_CONSOLE_SECRET``; without one (the embedded bus, a test) each process
makes its own, and ``bssbus serve`` makes one that its workers share. Sessions last
``console.session_minutes``. Every state-changing request is a POST carrying the session's CSRF
token; a replay or discard asks for confirmation on a page of its own and is journalled with the
operator's name (direction ``adm``), as `bssbus dlq` does. Unmasked XML is shown only to an
operator with the role ``raw-reader`` (:meth:`Operators.authorize`), after a POST, and each
message so shown is journalled (status ``unmasked``).

The pages carry no JavaScript; the Content-Security-Policy forbids any, so a ``<script>`` that
reached a page through a message would not run even if it were not escaped (it is: see html.py).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections import defaultdict, deque
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, quote, urlencode

from lxml import etree

from bus.operators import RAW_READER, AccessDenied, Operators, audit_unmasked
from bus.outbox import discard_dead_letter, replay_dead_letter
from bus.privacy import decode_xml, policy
from bus.stats import StatsError, daily_stats, local_today, parse_day, yuan
from bus.trace import timeline
from dao.journal import JournalKeyError
from dao.outbox import DEAD, OutboxStore
from dao.reconcile import COUNTS, ReconStore
from services.console.html import CSS_FILE, Markup, fen, h, join, link, page, post_button, table, when

log = logging.getLogger("bssbus.console")

SECRET_ENV = "BSSBUS_CONSOLE_SECRET"
COOKIE = "bssbus_console"
MAX_FORM_BYTES = 64 * 1024
#: failed logins of one name (per process) before it must wait, and for how long
LOGIN_FAILURES, LOGIN_WINDOW = 5, 300.0
STATUSES = ("ok", "fault", "error", "accepted", "duplicate", "received", "dead", "replayed", "discarded", "unmasked")
OUTBOX_STATUSES = ("dead", "pending", "delivered", "discarded")
SEARCH_FIELDS = (("msisdn", "number"), ("trans_ido", "TRANS_IDO"), ("proc_id", "PROC_ID"),
                 ("serial", "bank or top-up serial"), ("order_id", "order id"), ("service", "service"),
                 ("operation", "operation"), ("peer", "peer called (e.g. BILLING-51)"))


class Redirect(Exception):
    def __init__(self, location: str):
        self.location = location


class Console:
    """WSGI-style handler of ``/console/...`` for one bus process: ``console(environ)`` gives
    ``(status, headers, body)`` as ``BusApplication.route`` does."""

    def __init__(self, bus, operators: Operators | None = None, secret: bytes | None = None):
        self.bus = bus
        self.operators = operators or Operators.from_settings(bus.settings)
        given = os.environ.get(SECRET_ENV)
        self.secret = secret or (given.encode() if given else secrets.token_bytes(32))
        section = bus.settings.section("console") if isinstance(bus.settings.raw.get("console"), dict) else {}
        self.session_seconds = 60 * float(section.get("session_minutes", 480))
        self.outbox = OutboxStore(bus.engine)
        self.recon = ReconStore(bus.engine)
        self._failures: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    # -- entry ------------------------------------------------------------------------------
    def __call__(self, environ) -> tuple[str, list, bytes]:
        base = environ.get("SCRIPT_NAME", "") + "/console"
        path = (environ.get("PATH_INFO") or "/")[len("/console"):] or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if path == "/static/console.css":
                return "200 OK", [("Content-Type", "text/css; charset=utf-8"),
                                  ("Cache-Control", "max-age=3600")], CSS_FILE.read_bytes()
            if path == "/login":
                return self.login(environ, base, method)
            session = self.session(environ)
            if session is None:
                target = base + path + (("?" + environ["QUERY_STRING"]) if environ.get("QUERY_STRING") else "")
                raise Redirect(f"{base}/login?" + urlencode({"next": target}) if method == "GET" else f"{base}/login")
            form = self.form(environ) if method == "POST" else {}
            if method == "POST" and not hmac.compare_digest(form.get("csrf", ""), session["csrf"]):
                return self.html("403 Forbidden", page(base, "Refused", h(
                    "<p>This form has expired or did not come from the console (no valid CSRF token). "
                    "<a href='{}/'>Start again</a>.</p>", base), session["op"], session["csrf"]))
            if method not in ("GET", "HEAD", "POST"):
                return "405 Method Not Allowed", [("Allow", "GET, POST"), ("Content-Type", "text/plain")], b"GET or POST.\n"
            return self.dispatch(environ, base, path, method, session, form)
        except Redirect as go:
            return "303 See Other", [("Location", go.location), ("Content-Type", "text/plain"),
                                     ("Cache-Control", "no-store")], b"See " + go.location.encode() + b"\n"
        except JournalKeyError as exc:
            return self.html("500 Internal Server Error", page(base, "Cannot read the journal", h("<p>{}</p>", exc)))
        except Exception:   # never a traceback on a page
            log.exception("console failed on %s %s", method, path)
            return self.html("500 Internal Server Error", page(base, "The console failed", Markup(
                "<p>Something went wrong on the bus's side; the details are in the bus's log "
                "(logger bssbus.console).</p>")))

    def dispatch(self, environ, base, path, method, session, form):
        parts = [p for p in path.split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        ctx = dict(base=base, operator=session["op"], csrf=session["csrf"])
        if parts == ["logout"] and method == "POST":
            return self.logout(base)
        if method == "POST":
            if len(parts) == 3 and parts[0] == "dlq" and parts[2] in ("replay", "discard"):
                return self.dlq_action(ctx, parts[1], parts[2], form)
            if len(parts) == 3 and parts[0] == "trace" and parts[2] == "unmasked":
                return self.trace(ctx, parts[1], unmasked=True)
            return self.not_found(ctx, path)
        if not parts:
            return self.health(ctx)
        if parts == ["routes"]:
            return self.routes(ctx)
        if parts == ["journal"]:
            return self.journal(ctx, query)
        if len(parts) == 2 and parts[0] == "trace":
            return self.trace(ctx, parts[1])
        if parts == ["dlq"]:
            return self.dlq(ctx, query)
        if len(parts) == 2 and parts[0] == "dlq":
            return self.dlq_row(ctx, parts[1], query)
        if len(parts) == 3 and parts[0] == "dlq" and parts[2] in ("replay", "discard"):
            return self.dlq_confirm(ctx, parts[1], parts[2])
        if parts == ["stats"]:
            return self.stats(ctx, query)
        if parts == ["stats.csv"]:
            return self.stats(ctx, query, csv=True)
        if parts == ["reconciliation"]:
            return self.batches(ctx, query)
        if len(parts) == 2 and parts[0] == "reconciliation":
            return self.batch(ctx, parts[1])
        return self.not_found(ctx, path)

    # -- responses --------------------------------------------------------------------------
    @staticmethod
    def html(status: str, body: bytes, headers=()) -> tuple[str, list, bytes]:
        return status, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"),
                        ("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; "
                         "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
                        ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
                        ("X-Frame-Options", "DENY"), *headers], body

    def show(self, ctx, title, body, section=None, status="200 OK", **flash):
        return self.html(status, page(ctx["base"], title, body, ctx["operator"], ctx["csrf"], section, **flash))

    def not_found(self, ctx, path):
        return self.show(ctx, "Not found", h("<p>Nothing at {}{}.</p>", ctx["base"], path), status="404 Not Found")

    # -- sessions ---------------------------------------------------------------------------
    def _sign(self, payload: bytes) -> str:
        return hmac.new(self.secret, payload, hashlib.sha256).hexdigest()

    def cookie_for(self, operator: str) -> str:
        sid = secrets.token_urlsafe(16)
        payload = base64.urlsafe_b64encode(json.dumps(
            {"op": operator, "exp": int(time.time() + self.session_seconds), "sid": sid}).encode()).decode()
        return f"{payload}.{self._sign(payload.encode())}"

    def session(self, environ) -> dict | None:
        """The logged-in operator's session (``op``, ``csrf``), or None."""
        value = _cookie(environ.get("HTTP_COOKIE", ""), COOKIE)
        if not value or "." not in value:
            return None
        payload, signature = value.rsplit(".", 1)
        if not hmac.compare_digest(self._sign(payload.encode()), signature):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload.encode()))
        except (ValueError, TypeError):
            return None
        if not isinstance(data, dict) or data.get("exp", 0) < time.time():
            return None
        operator = self.operators.by_name.get(data.get("op"))
        if operator is None or not operator.can_log_in:   # removed since: the session ends
            return None
        return {"op": operator.name, "csrf": self._sign(f"csrf:{data.get('sid')}".encode())}

    def _set_cookie(self, environ, value: str, max_age: int) -> tuple[str, str]:
        secure = "; Secure" if environ.get("wsgi.url_scheme") == "https" else ""
        path = environ.get("SCRIPT_NAME", "") + "/console/"
        return ("Set-Cookie", f"{COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")

    @staticmethod
    def form(environ) -> dict[str, str]:
        try:
            length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_FORM_BYTES)
        except ValueError:
            length = 0
        data = environ["wsgi.input"].read(length) if length > 0 else b""
        return {k: v[-1] for k, v in parse_qs(data.decode("utf-8", "replace"), keep_blank_values=True).items()}

    def login(self, environ, base, method):
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        form = self.form(environ) if method == "POST" else {}
        target = form.get("next") or query.get("next") or f"{base}/"
        if (not target.startswith(base + "/") or "//" in target[len(base):] or "\\" in target
                or not all("!" <= c <= "~" for c in target)):
            target = f"{base}/"    # never a redirect off the console
        error = None
        if method == "POST":
            name, password = form.get("name", "").strip(), form.get("password", "")
            if self._throttled(name):
                error = (f"Too many failed logins for this name: wait {LOGIN_WINDOW / 60:.0f} minutes, "
                         "or ask whoever runs the bus.")
            elif name and password and self.operators.authenticate(name, password):
                with self._lock:
                    self._failures.pop(name, None)
                log.info("console: operator %s logged in", name)
                value = self.cookie_for(name)
                return "303 See Other", [("Location", target), ("Content-Type", "text/plain"),
                                         ("Cache-Control", "no-store"),
                                         self._set_cookie(environ, value, int(self.session_seconds))], b"Logged in.\n"
            else:
                self._failed(name)
                log.warning("console: failed login for %r from %s", name[:40], environ.get("REMOTE_ADDR"))
                error = "Wrong name or password."
        usable = [o for o in self.operators.by_name.values() if o.can_log_in]
        hint = Markup("") if usable else Markup(
            "<p class='note'>No operator has a console password yet: see the README, section Console "
            "(<code>operators:</code> in the configuration, and <code>BSSBUS_OPERATOR_&lt;NAME&gt;_PASSWORD</code> "
            "or <code>password_hash</code> in the secrets file).</p>")
        body = h("<form method='post' action='{base}/login' class='stack'>"
                 "<label>Operator <input name='name' id='name' autocomplete='username' required autofocus></label>"
                 "<label>Password <input name='password' id='password' type='password' "
                 "autocomplete='current-password' required></label>"
                 "<input type='hidden' name='next' value='{target}'>"
                 "<button type='submit' class='primary' id='login'>Log in</button></form>{hint}",
                 base=base, target=target, hint=hint)
        status = "401 Unauthorized" if error else "200 OK"
        return self.html(status, page(base, "Log in", body, error=error))

    def _throttled(self, name: str) -> bool:
        with self._lock:
            times = self._failures.get(name)
            if not times:
                return False
            while times and times[0] < time.monotonic() - LOGIN_WINDOW:
                times.popleft()
            return len(times) >= LOGIN_FAILURES

    def _failed(self, name: str) -> None:
        if name not in self.operators.by_name:   # made-up names: nothing to lock, no memory to grow
            return
        with self._lock:
            self._failures[name].append(time.monotonic())

    def logout(self, base):
        return "303 See Other", [("Location", f"{base}/login"), ("Content-Type", "text/plain"),
                                 ("Set-Cookie", f"{COOKIE}=; Path={base}/; Max-Age=0; HttpOnly; SameSite=Strict")], \
            b"Logged out.\n"

    # -- health -----------------------------------------------------------------------------
    def health(self, ctx):
        bus, now = self.bus, datetime.now(timezone.utc)
        try:
            with bus.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            database = "ok"
        except Exception as exc:
            database = f"error: {type(exc).__name__}"
        breakers = bus.adapters.breakers.snapshot() if bus.adapters else {}
        queued = self.outbox.counts()
        hour = bus.journal.peer_activity(now - timedelta(hours=1))
        day = bus.journal.peer_activity(now - timedelta(days=1))
        rows = []
        for peer in sorted(set(breakers) | set(queued) | set(day)):
            b, q, a = breakers.get(peer), queued.get(peer, {}), hour.get(peer, {"calls": 0, "failed": 0})
            state = b["state"] if b else "not called yet"
            if b and b["state"] != "closed":
                state += f" since {b['opened_at']}" if b.get("opened_at") else ""
            if b and b["failures"]:
                state += f" ({b['failures']} failure(s) in a row)"
            rate = f"{100 * a['failed'] / a['calls']:.0f} %" if a["calls"] else ""
            last_ok = (day.get(peer) or {}).get("last_ok")
            dead = q.get(DEAD, 0)
            css = "bad" if (b and b["state"] == "open") or dead else \
                "warn" if (b and b["state"] == "half-open") or a["failed"] else ""
            rows.append(([peer, state, a["calls"], a["failed"], rate, when(last_ok) or "none in 24 h",
                          q.get("pending", 0),
                          link(f"{ctx['base']}/dlq?peer={quote(peer)}", dead) if dead else 0], css))
        dead_total = sum(q.get(DEAD, 0) for q in queued.values())
        body = h("<dl class='fields'><dt>database</dt><dd>{db}</dd><dt>queued for delivery</dt><dd>{q}</dd>"
                 "<dt>dead letters</dt><dd>{d}</dd><dt>this page</dt><dd>{now} UTC, bus process {pid}</dd></dl>"
                 "<h2>Peers</h2>"
                 "<p class='note'>Breaker: the circuit breaker of each peer endpoint <b>as this bus process sees "
                 "it</b> (process {pid}); each process (each gunicorn worker) keeps its own, so another worker "
                 "may see another state. Calls, failures and error rate: the last hour of the journal (every "
                 "process); last success: within 24 hours. Queued: stored messages waiting for delivery.</p>{t}",
                 db=database, q=sum(q.get("pending", 0) for q in queued.values()),
                 d=link(f"{ctx['base']}/dlq", dead_total) if dead_total else 0,
                 now=when(now, seconds=False), pid=os.getpid(),
                 t=table(["peer", "breaker (this process)", "calls 1 h", "failed 1 h", "error rate", "last success",
                          "queued", "dead letters"], rows, "no peer was called in the last day"))
        return self.show(ctx, "Health", body, "")

    # -- routes -----------------------------------------------------------------------------
    def routes(self, ctx):
        from bus.cli import effective_routes
        store = self.bus.phase_store
        data = effective_routes(self.bus.settings, store.load())
        routes = table(["route", "service.operations", "caller", "target", "delivery"], [
            [r["name"], f"{r['service']}.{r['operations'] if isinstance(r['operations'], str) else ', '.join(r['operations'])}",
             r["caller"], r["target"], r["delivery"]] for r in data["routes"]])
        by_phase = [r["name"] for r in data["routes"] if "phase" in r["target"]]
        provinces = table(["province", "phase", "configured", "the phase's routes go to"], [
            ([p["province"], p["phase"], p["config_phase"] if p["config_phase"] is not None else "",
              ", ".join(sorted({p["targets"][n] for n in by_phase}))],
             "warn" if p["config_phase"] != p["phase"] else "") for p in data["provinces"]])
        history = table(["when (UTC)", "province", "from", "to", "by", "reason"], [
            [when(r["changed_at"]), r["province"], r["old_phase"], r["new_phase"], r["changed_by"], r["reason"]]
            for r in store.history(None, 20)], "no province has moved at run time")
        body = h("<p class='note'>The first route matching service, operation and caller wins. Phase 2: the "
                 "province's own systems; phase 3: HQ systems. A highlighted province was moved at run time "
                 "(<code>bssbus phase set</code>); every bus process follows within a few seconds.</p>"
                 "<h2>Routes</h2>{}<h2>Provinces</h2>{}<h2>Recent phase changes</h2>{}", routes, provinces, history)
        return self.show(ctx, "Routes & phases", body, "routes")

    # -- journal search ---------------------------------------------------------------------
    def journal(self, ctx, query):
        from bus.cli import CliError, _moment
        keys = {name: query.get(name, "").strip()[:64] for name, _ in SEARCH_FIELDS}
        status, direction = query.get("status", ""), query.get("direction", "")
        fields = join(h("<label>{}<input name='{}' id='q-{}' value='{}'></label>", label, name, name, keys[name])
                      for name, label in SEARCH_FIELDS)
        fields += h("<label>status<select name='status' id='q-status'>{}</select></label>", join(
            h("<option value='{}'{}>{}</option>", s, Markup(" selected") if s == status else "", s or "any")
            for s in ("",) + STATUSES))
        fields += h("<label>direction<select name='direction'>{}</select></label>", join(
            h("<option value='{}'{}>{}</option>", d, Markup(" selected") if d == direction else "", label)
            for d, label in (("", "any"), ("in", "in: from a caller"), ("out", "out: to a peer"),
                             ("adm", "adm: dead letter, replay..."))))
        for name, label in (("since", "since (ISO time or 30m, 2h, 3d)"), ("until", "until")):
            fields += h("<label>{}<input name='{}' value='{}'></label>", label, name, query.get(name, ""))
        form = h("<form method='get' action='{}/journal' class='search'>{}<div><button type='submit' "
                 "class='primary' id='search'>Search</button></div></form>", ctx["base"], fields)
        if not any(query.get(k) for k in ("since", "until", "status", "direction", *keys)):
            return self.show(ctx, "Journal", form + Markup(
                "<p class='note'>Every hop of every message: a caller's request (in), each call or delivery "
                "attempt to a peer (out), and what happened besides (adm). Give any keys; hops matching all of "
                "them are listed newest first. A customer's payments: their number and service BankPayment; "
                "a stuck order: its order id.</p>"), "journal")
        try:
            since, until = _moment(query.get("since"), "since"), _moment(query.get("until"), "until")
        except CliError as exc:
            return self.show(ctx, "Journal", form, "journal", error=str(exc))
        rows = self.bus.journal.search(since=since, until=until, limit=100, status=status or None,
                                       direction=direction or None, **{k: v or None for k, v in keys.items()})
        masking, base = policy(), ctx["base"]
        out = []
        for r in rows:
            result = " ".join(str(v) for v in (r["status"], r.get("fault_code") or r.get("rsp_code")) if v)
            flow = r.get("proc_id") or r.get("trans_ido") or r["msg_id"]
            keys_cell = join([h("number {} ", r["msisdn"]) if r.get("msisdn") else "",
                              h("serial {} ", r["serial"]) if r.get("serial") else "",
                              h("order {} ", r["order_id"]) if r.get("order_id") else ""])
            out.append(([when(r["started_at"]), r["direction"], f"{r.get('service')}.{r.get('operation')}",
                         r.get("source") or "", r.get("target") or "", result,
                         f"{r['elapsed_ms']:.0f}" if r.get("elapsed_ms") is not None else "",
                         link(f"{base}/trace/{quote(r.get('trans_ido') or r['msg_id'], safe='')}",
                              r.get("trans_ido") or r["msg_id"]),
                         keys_cell, link(f"{base}/trace/{quote(flow, safe='')}", "trace of the flow"),
                         masking.mask_text(r.get("error")) or ""],
                        "bad" if r["status"] in ("fault", "error", "dead") else ""))
        body = form + h("<p class='note'>{} hop(s), newest first (at most 100). Times are UTC. TRANS_IDO opens "
                        "that message; \"trace of the flow\" every message of its PROC_ID.</p>", len(rows)) + table(
            ["time (UTC)", "dir", "service.operation", "from", "to", "result", "ms", "TRANS_IDO", "keys", "",
             "reason"], out, "no hop matches", cls="results")
        return self.show(ctx, "Journal", body, "journal")

    # -- trace ------------------------------------------------------------------------------
    def trace(self, ctx, key, unmasked: bool = False):
        key = key[:64]
        notice = None
        if unmasked:
            try:
                self.operators.authorize(ctx["operator"], RAW_READER)
            except AccessDenied as exc:
                return self.show(ctx, "Refused", h("<p>Unmasked view refused: {}.</p>", exc), status="403 Forbidden")
        hops = self.bus.journal.hops(key)
        if not hops:
            return self.show(ctx, f"Trace {key}", h(
                "<p>No message with TRANS_IDO, PROC_ID or id {} in the journal. <a href='{}/journal'>Search the "
                "journal</a> by number, serial, order id or time.</p>", key, ctx["base"]), "journal",
                status="404 Not Found")
        masking = policy()
        if unmasked:
            audit_unmasked(self.bus.journal, ctx["operator"], hops, f"trace of {key} in the console")
            shown = [dict(r, **{k: decode_xml(r[k]) for k in ("request", "response") if r.get(k) is not None})
                     for r in hops]
            mask = None
            notice = (f"Shown unmasked to {ctx['operator']}: personal data included. This view is journalled "
                      "(direction adm, status unmasked).")
        else:
            shown = [masking.mask_hop(r) for r in hops]
            mask = masking.mask_text
        rows = self.outbox.of_messages(r["msg_id"] for r in hops)
        trace = timeline([{k: v for k, v in r.items() if k not in ("request", "response")} for r in shown], rows,
                         mask=mask)
        base = ctx["base"]
        answered = {}
        for r in shown:
            if r["direction"] == "out" and r["status"] == "ok":
                answered.setdefault(r["msg_id"], []).append(f"{r.get('target')} ({r.get('rsp_code') or 'ok'})")
        messages = table(["#", "service.operation", "caller", "delivery", "TRANS_IDO", "keys", "answered by"], [
            [m["n"], f"{m['service']}.{m['operation']}", m["caller"] or "?", m["delivery"], m["trans_ido"],
             " ".join(f"{label} {m[k]}" for label, k in (("number", "msisdn"), ("serial", "serial"),
                                                          ("order", "order_id")) if m.get(k)),
             ", ".join(dict.fromkeys(answered.get(m["msg_id"], []))) or "no peer yet"]
            for m in trace["messages"]], cls="messages")
        events = table(["time (UTC)", "#", "event", "what", "reason"], [
            ([when(ev["at"]), ev["message"], ev["kind"], ev["text"],
              ev.get("reason") if ev["kind"] in ("answer", "call", "attempt", "dead letter", "discard") else ""],
             "bad" if ev["kind"] == "dead letter" or ev.get("status") in ("fault", "error") else
             "good" if ev["kind"] in ("call", "attempt") and ev.get("status") == "ok" else "")
            for ev in trace["events"]], cls="timeline")
        outbox = table(["outbox", "#", "to", "status", "attempts", "peer answered", "next attempt", "last error"], [
            ([link(f"{base}/dlq/{r['id']}", r["id"]), r["message"], r["peer"], r["status"], r["attempts"],
              r.get("rsp_code") or "", when(r.get("next_attempt_at")) if r["status"] == "pending" else "",
              r.get("last_error") or ""], "bad" if r["status"] == "dead" else "good" if r["status"] == "delivered"
             else "") for r in trace["outbox"]], cls="outbox")
        xml = join(self._hop_xml(r) for r in shown if r.get("request") is not None or r.get("response") is not None)
        raw_button = Markup("")
        if not unmasked and ctx["operator"] in self.operators.by_name and \
                self.operators.by_name[ctx["operator"]].has(RAW_READER):
            raw_button = h("<p>{} <span class='note'>(you hold the role raw-reader; the view is journalled)</span>"
                           "</p>", post_button(f"{base}/trace/{quote(key, safe='')}/unmasked",
                                               "Show the messages unmasked", ctx["csrf"], "danger"))
        body = h("<p class='note'>Every message of the flow (its PROC_ID) or the one message (its TRANS_IDO): "
                 "what came in, how it was routed, each call or delivery attempt with the peer's answer, dead "
                 "letters and replays. Personal data is {masked}.</p><h2>Messages</h2>{messages}"
                 "<h2>Timeline</h2>{events}{outbox_title}{outbox}<h2>The messages as XML</h2>{raw}{xml}",
                 masked="shown (unmasked view)" if unmasked else "masked", messages=messages, events=events,
                 outbox_title=Markup("<h2>Outbox now</h2>") if trace["outbox"] else "",
                 outbox=outbox if trace["outbox"] else "", raw=raw_button, xml=xml)
        return self.show(ctx, f"Trace {key}", body, "journal", notice=notice)

    def _hop_xml(self, r) -> Markup:
        who = f"{r.get('source') or '?'} -> BUS" if r["direction"] == "in" else f"BUS => {r.get('target') or '?'}"
        parts = join(h("<h4>{}</h4><pre class='xml'>{}</pre>", label, pretty_xml(r[k]))
                     for k, label in (("request", "request"), ("response", "answer")) if r.get(k))
        return h("<details><summary>{} {} {}.{} {}</summary>{}</details>", when(r["started_at"]), who,
                 r.get("service"), r.get("operation"), r["status"], parts)

    # -- dead letters -----------------------------------------------------------------------
    def dlq(self, ctx, query):
        status = query.get("status", DEAD)
        status = status if status in OUTBOX_STATUSES or status == "all" else DEAD
        peer = query.get("peer", "").strip()[:40] or None
        masking, base = policy(), ctx["base"]
        rows = self.outbox.list(None if status == "all" else status, peer, limit=200)
        out = [([link(f"{base}/dlq/{r['id']}", r["id"]), r["status"], f"{r['service']}.{r['operation']}",
                 r["peer_name"], r["attempts"], r.get("rsp_code") or "",
                 link(f"{base}/trace/{quote(r['trans_ido'] or r['msg_id'], safe='')}", r["trans_ido"] or r["msg_id"]),
                 when(r.get("created_at")), masking.mask_text(r.get("last_error")) or "",
                 link(f"{base}/dlq/{r['id']}/replay", "Replay…") if r["status"] == DEAD else ""],
                "bad" if r["status"] == DEAD else "") for r in rows]
        choices = join(h("<option value='{}'{}>{}</option>", s, Markup(" selected") if s == status else "", s)
                       for s in (*OUTBOX_STATUSES, "all"))
        body = h("<form method='get' action='{}/dlq' class='search'><label>status<select name='status'>{}</select>"
                 "</label><label>peer<input name='peer' value='{}'></label><div><button type='submit'>Show"
                 "</button></div></form><p class='note'>A stored message whose delivery attempts are spent is a "
                 "dead letter: it waits here (and holds its user's later messages) until it is replayed or "
                 "discarded. Replay it once the peer is back; each replay is journalled with your name.</p>{}",
                 base, choices, peer or "", table(["id", "status", "service.operation", "to", "attempts",
                                                   "peer answered", "TRANS_IDO", "stored (UTC)", "last error", ""],
                                                  out, f"no {status} messages"))
        return self.show(ctx, "Dead letters", body, "dlq")

    def _row(self, row_id: str):
        number = _id(row_id)
        return self.outbox.get(number) if number is not None else None

    def dlq_row(self, ctx, row_id, query):
        row = self._row(row_id)
        if row is None:
            return self.not_found(ctx, f"/dlq/{row_id}")
        masking, base = policy(), ctx["base"]
        try:
            message = json.loads(row["message"])
        except ValueError:
            message = {}
        known = masking.personal_values(message)
        shown = masking.mask_data(message, known)
        fields = [("status", row["status"]), ("service.operation", f"{row['service']}.{row['operation']}"),
                  ("to", row["peer_name"]), ("province", row.get("province") or ""), ("attempts", row["attempts"]),
                  ("peer answered", row.get("rsp_code") or ""), ("stored (UTC)", when(row.get("created_at"))),
                  ("delivered (UTC)", when(row.get("delivered_at"))),
                  ("next attempt (UTC)", when(row.get("next_attempt_at")) if row["status"] == "pending" else ""),
                  ("last error", masking.mask_text(row.get("last_error"), known) or ""),
                  ("later messages of its user waiting", self.outbox.waiting_behind(row)),
                  ("TRANS_IDO", link(f"{base}/trace/{quote(row['trans_ido'] or row['msg_id'], safe='')}",
                                     row["trans_ido"] or row["msg_id"]))]
        dl = h("<dl class='fields' id='outbox-row'>{}</dl>", join(h("<dt>{}</dt><dd class='{}'>{}</dd>", k,
                                                                   k.replace(" ", "-"), v) for k, v in fields))
        actions = Markup("")
        if row["status"] == DEAD:
            actions = h("<p><a href='{b}/dlq/{i}/replay'><button type='button' class='primary' id='replay'>Replay…"
                        "</button></a> <a href='{b}/dlq/{i}/discard'><button type='button' class='danger'>Discard…"
                        "</button></a></p>", b=base, i=row["id"])
        notice = {"replayed": f"Dead letter {row['id']} replayed by {ctx['operator']}: the bus delivers it again "
                              "(reload to follow it).",
                  "discarded": f"Dead letter {row['id']} discarded by {ctx['operator']}."}.get(query.get("done", ""))
        body = dl + actions + h("<h2>The stored message (personal data masked)</h2><pre>{}</pre>",
                                json.dumps(shown, ensure_ascii=False, indent=2, default=str))
        return self.show(ctx, f"Outbox message {row['id']}", body, "dlq", notice=notice)

    def dlq_confirm(self, ctx, row_id, action, error: str | None = None):
        row = self._row(row_id)
        if row is None:
            return self.not_found(ctx, f"/dlq/{row_id}/{action}")
        base = ctx["base"]
        if row["status"] != DEAD:
            return self.show(ctx, f"Outbox message {row['id']}", h(
                "<p>Message {} is {}, not a dead letter: nothing to {}. <a href='{}/dlq/{}'>Back</a></p>",
                row["id"], row["status"], action, base, row["id"]), "dlq", status="409 Conflict")
        what = h("<p>{} of {} to <b>{}</b> (TRANS_IDO {}), {} attempt(s); last error: {}</p>",
                 f"Dead letter {row['id']}", f"{row['service']}.{row['operation']}", row["peer_name"],
                 row["trans_ido"], row["attempts"], policy().mask_text(row.get("last_error")) or "none")
        if action == "replay":
            form = h("<form method='post' action='{b}/dlq/{i}/replay' class='stack'>{csrf}"
                     "<p>Replay it? Its attempts start again from zero and the bus delivers it at once. The replay "
                     "is journalled under your name, {op}.</p><button type='submit' class='primary' id='confirm'>"
                     "Yes, replay it</button><a href='{b}/dlq/{i}'>No, go back</a></form>",
                     b=base, i=row["id"], op=ctx["operator"], csrf=_hidden_csrf(ctx))
        else:
            form = h("<form method='post' action='{b}/dlq/{i}/discard' class='stack'>{csrf}"
                     "<p>Give it up? It is never delivered, and its user's later messages go on. The discard is "
                     "journalled under your name, {op}, with your reason.</p>"
                     "<label>Reason <input name='reason' id='reason' required maxlength='500'></label>"
                     "<button type='submit' class='danger' id='confirm'>Yes, discard it</button>"
                     "<a href='{b}/dlq/{i}'>No, go back</a></form>",
                     b=base, i=row["id"], op=ctx["operator"], csrf=_hidden_csrf(ctx))
        title = f"{'Replay' if action == 'replay' else 'Discard'} dead letter {row['id']}?"
        return self.show(ctx, title, what + form, "dlq", error=error)

    def dlq_action(self, ctx, row_id, action, form):
        row = self._row(row_id)
        if row is None:
            return self.not_found(ctx, f"/dlq/{row_id}/{action}")
        if row["status"] != DEAD:
            return self.dlq_confirm(ctx, row_id, action)
        if action == "replay":
            done = replay_dead_letter(self.outbox, self.bus.journal, row, ctx["operator"])
        else:
            reason = form.get("reason", "").strip()[:500]
            if not reason:
                return self.dlq_confirm(ctx, row_id, action, error="Say why it is given up.")
            done = discard_dead_letter(self.outbox, self.bus.journal, row, ctx["operator"], reason)
        if done:
            log.info("console: %s: dead letter %s %sed", ctx["operator"], row["id"], action)
        raise Redirect(f"{ctx['base']}/dlq/{row['id']}" + (f"?done={action}ed" if done else ""))

    # -- reconciliation ---------------------------------------------------------------------
    def stats(self, ctx, query, csv: bool = False):
        """The daily figures per province of `bssbus stats` (bus/stats.py), as a table or CSV."""
        tz, base = self.bus.settings.stats_timezone, ctx["base"]
        province = query.get("province", "").strip() or None
        try:
            until = parse_day(query.get("until"), "until", tz, local_today(tz))
            since = parse_day(query.get("since"), "since", tz, until - timedelta(days=6))
            report = daily_stats(self.bus.engine, since, until, tz, province)
        except StatsError as exc:
            report, error = None, str(exc)
        else:
            error = None
        if csv and report is not None:
            name = f"bssbus-stats-{report.since}-{report.until}.csv"
            return "200 OK", [("Content-Type", "text/csv; charset=utf-8"), ("Cache-Control", "no-store"),
                              ("Content-Disposition", f'attachment; filename="{name}"')], \
                report.csv_text().encode("utf-8")
        form = h("<form method='get' action='{}/stats' class='search'><label>since<input name='since' value='{}' "
                 "placeholder='7d, 2026-11-20'></label><label>until<input name='until' value='{}' "
                 "placeholder='today'></label><label>province<input name='province' value='{}'></label>"
                 "<div><button type='submit'>Show</button></div></form>", base, query.get("since", ""),
                 query.get("until", ""), province or "")
        if report is None:
            return self.show(ctx, "Statistics", form + h("<p class='bad'>{}</p>", error), "stats")
        total = report.totals()

        def cells(r, day, prov):
            return [day, prov, r.orders, r.work_orders_completed, r.payments, yuan(r.payments_fen), r.reversals,
                    yuan(r.reversals_fen), r.topups, yuan(r.topups_fen), r.faults,
                    ", ".join(f"{peer} {n}" for peer, n in sorted(r.faults_by_peer.items()))]
        rows = [(cells(r, r.day, r.province or "-"), "") for r in report.rows]
        if report.rows:
            rows.append((cells(total, "total", ""), "total"))
        link_csv = f"{base}/stats.csv?" + urlencode({k: v for k, v in (("since", str(report.since)),
                                                                       ("until", str(report.until)),
                                                                       ("province", province)) if v})
        body = form + h("<p class='note'>Days {} to {} in {}, from the journal: orders taken, work orders "
                        "reported done, payments, reversals and top-ups answered 0000 (sums in yuan), failed "
                        "calls by peer. <a href='{}'>Download as CSV</a>.</p>{}{}", report.since, report.until,
                        report.timezone_name, link_csv, table(
                            ["day", "province", "orders", "work orders done", "payments", "yuan", "reversals",
                             "yuan", "top-ups", "yuan", "faults", "faults by peer"], rows, "nothing in this range"),
                        h("<p class='note'>{} payment, reversal or top-up hop(s) journalled before amounts were "
                          "kept: counted, not in the sums.</p>", report.unpriced) if report.unpriced else "")
        return self.show(ctx, "Statistics", body, "stats")

    def batches(self, ctx, query):
        bank = query.get("bank", "").strip()[:10] or None
        base = ctx["base"]
        rows = [([link(f"{base}/reconciliation/{b['id']}", b["id"]), b.get("bank_code") or "", b.get("acct_date") or "",
                  b["file_name"], b["state"], b.get("lines") or "", fen(b.get("amount")),
                  *[b.get(f"{name}_count") if b.get(f"{name}_count") is not None else "" for name in COUNTS],
                  b.get("posted") if b.get("posted") is not None else "",
                  b.get("held") if b.get("held") is not None else "", when(b["started_at"]),
                  policy().mask_text(b.get("reason")) or ""],
                 "bad" if b["state"] in ("rejected",) else "warn" if b["state"] in ("comparing", "posting") else "")
                for b in self.recon.batches(100, bank)]
        body = h("<form method='get' action='{}/reconciliation' class='search'><label>bank<input name='bank' "
                 "value='{}'></label><div><button type='submit'>Show</button></div></form>"
                 "<p class='note'>Each bank file of a day is a batch: compared with what the billings recorded, "
                 "its discrepancies corrected through the bus (posted or reversed) or held for a person. Amounts "
                 "in yuan.</p>{}", base, bank or "", table(
                     ["batch", "bank", "day", "file", "state", "lines", "amount", "balanced", "bank only",
                      "billing only", "mismatch", "unlisted", "posted", "held", "started (UTC)", "reason"],
                     rows, "no reconciliation batch yet"))
        return self.show(ctx, "Reconciliation", body, "reconciliation")

    def batch(self, ctx, batch_id):
        number = _id(batch_id)
        b = self.recon.get(number) if number is not None else None
        if b is None:
            return self.not_found(ctx, f"/reconciliation/{batch_id}")
        base, limit = ctx["base"], 1000
        summary = table(["outcome", "count", "sum"], [
            [name.replace("_", " "), b.get(f"{name}_count") or 0, fen(b.get(f"{name}_sum") or 0)] for name in COUNTS])
        fields = [("bank", b.get("bank_code")), ("day", b.get("acct_date")), ("file", b["file_name"]),
                  ("state", b["state"]), ("lines", b.get("lines")), ("amount", fen(b.get("amount"))),
                  ("posted", b.get("posted")), ("held", b.get("held")), ("result file", b.get("result_file")),
                  ("started (UTC)", when(b["started_at"])), ("finished (UTC)", when(b.get("finished_at"))),
                  ("reason", policy().mask_text(b.get("reason")))]
        items, count = [], self.recon.tally(b["id"])[0]
        for item in self.recon.each_item(b["id"]):
            if len(items) >= limit:
                break
            items.append(([item["bank_serial"], item.get("txn_time") or "", item.get("msisdn") or "",
                           item.get("province") or "", fen(item.get("bank_amount")), fen(item.get("billing_amount")),
                           {"0": "payment", "1": "reversal"}.get(item["txn_type"], item["txn_type"]),
                           item.get("orig_serial") or "", item["outcome"], item["action"], item["state"],
                           policy().mask_text(item.get("detail")) or "",
                           link(f"{base}/trace/{quote(item['trans_ido'], safe='')}", item["trans_ido"])
                           if item.get("trans_ido") else ""],
                          "bad" if item["state"] in ("failed", "held") else ""))
        body = h("<dl class='fields'>{}</dl><h2>Outcomes</h2>{}<h2>Discrepancies</h2><p class='note'>{}</p>{}",
                 join(h("<dt>{}</dt><dd>{}</dd>", k, "" if v is None else v) for k, v in fields), summary,
                 f"{count} discrepancies" + (f", the first {limit} shown" if count > limit else "")
                 + "; a correction's TRANS_IDO opens its delivery.",
                 table(["serial", "time", "number", "province", "bank amount", "billing amount", "type", "original",
                        "outcome", "action", "state", "detail", "correction"], items, "no discrepancies"))
        return self.show(ctx, f"Reconciliation batch {b['id']}", body, "reconciliation")


def _id(text: str) -> int | None:
    """A row id from a URL: ASCII digits of a size a database id has ("²" and a hundred digits
    are no id), else None."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def _hidden_csrf(ctx) -> Markup:
    return h("<input type='hidden' name='csrf' value='{}'>", ctx["csrf"])


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_blank_text=True)


def pretty_xml(text: str | bytes | None) -> str:
    """An XML document indented for reading (text that does not parse is returned as it is)."""
    if text is None:
        return ""
    text = decode_xml(text).lstrip("\ufeff")
    body = text
    if body.startswith("<?xml"):
        end = body.find("?>")
        body = body[end + 2:] if end >= 0 else body
    try:
        root = etree.fromstring(body.strip().encode("utf-8"), _parser())
    except (etree.XMLSyntaxError, ValueError):
        return text
    return etree.tostring(root, encoding="unicode", pretty_print=True)
