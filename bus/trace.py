"""The trace of a business flow (`bssbus journal trace KEY`): every hop of every message that
shares a PROC_ID (or of one message, by TRANS_IDO) as one timeline.

The journal holds the hops (``dao.journal.Journal.trace``): the inbound request and the
answer it got (``in``: the row's ``route`` is the routing decision, the rule that matched and
its target), each call to a peer (``out``: a synchronous call, or one attempt of a stored
message, store and forward), and what happened to a message besides (``adm``: it became a dead
letter, an operator replayed or discarded it, or viewed it unmasked). The outbox rows of the
stored messages (``dao.outbox.OutboxStore.of_messages``) say where each recipient's copy is
now. :func:`timeline` turns both into events in time order; the command line prints them as
lines or JSON.
"""
from __future__ import annotations

from collections import defaultdict

from dao.db import as_utc

#: adm statuses and the kind of event they are
ADM_KINDS = {"dead": "dead letter", "replayed": "replay", "discarded": "discard", "unmasked": "unmasked view"}


def timeline(hops: list[dict], outbox: list[dict] = (), mask=None) -> dict:
    """``{"messages": [...], "events": [...], "outbox": [...]}`` of the hops of one flow
    (in time order, as ``Journal.trace`` gives them) and the outbox rows of its messages.

    ``mask`` (a callable on text) masks the personal data in reasons. Each event has its time
    (``at``, UTC), ``kind`` (inbound, route, answer, call, attempt, dead letter, replay,
    discard, unmasked view), the message's number in ``messages`` (``message``), and
    ``text``: the line a person reads."""
    mask = mask or (lambda text: text)
    stored = {h["msg_id"] for h in hops if h["direction"] == "in" and h["status"] == "accepted"}
    stored |= {r["msg_id"] for r in outbox}
    messages: dict[str, dict] = {}
    events: list[dict] = []
    attempts: dict[tuple, int] = defaultdict(int)   # (msg_id, peer) -> attempts since the last replay

    def number(hop: dict) -> int:
        if hop["msg_id"] not in messages:
            messages[hop["msg_id"]] = dict(n=len(messages) + 1, msg_id=hop["msg_id"], trans_ido=hop.get("trans_ido"),
                                           proc_id=hop.get("proc_id"), service=hop.get("service"),
                                           operation=hop.get("operation"), caller=None, msisdn=hop.get("msisdn"),
                                           serial=hop.get("serial"), order_id=hop.get("order_id"),
                                           delivery="store and forward" if hop["msg_id"] in stored else "sync")
        return messages[hop["msg_id"]]["n"]

    def add(hop: dict, at, kind: str, text: str, **more) -> None:
        events.append(dict(at=as_utc(at), kind=kind, message=number(hop), trans_ido=hop.get("trans_ido"),
                           service=hop.get("service"), operation=hop.get("operation"), text=text, **more))

    for hop in hops:
        number(hop)   # the messages are numbered in the order they first appear
        reason = mask(hop.get("error")) if hop.get("error") else None
        outcome = dict(status=hop["status"], rsp_code=hop.get("rsp_code"), fault_code=hop.get("fault_code"),
                       elapsed_ms=hop.get("elapsed_ms"), reason=reason)
        if hop["direction"] == "in":
            messages[hop["msg_id"]]["caller"] = hop.get("source")
            add(hop, hop["started_at"], "inbound",
                f"{hop.get('source') or '?'} -> BUS  {hop.get('service')}.{hop.get('operation')}"
                + (f"  number {hop['msisdn']}" if hop.get("msisdn") else "")
                + (f"  serial {hop['serial']}" if hop.get("serial") else "")
                + (f"  order {hop['order_id']}" if hop.get("order_id") else ""), source=hop.get("source"))
            if hop.get("route"):
                how = "stored for delivery (store and forward)" if hop["msg_id"] in stored else "called now (sync)"
                add(hop, hop["started_at"], "route", f"{mask(hop['route'])}; {how}", peer=hop.get("target"),
                    route=mask(hop["route"]))
            elif hop.get("fault_code"):
                add(hop, hop["started_at"], "route", f"not routed: {hop['fault_code']}", peer=None, route=None)
            if hop["status"] != "received":   # answered (a row still "received" is in flight, or was cut off)
                add(hop, hop.get("finished_at") or hop["started_at"], "answer",
                    f"BUS -> {hop.get('source') or '?'}  {_result(hop)}{_ms(hop)}", **outcome)
        elif hop["direction"] == "out":
            peer = hop.get("target") or "?"
            if hop["msg_id"] in stored:
                attempts[(hop["msg_id"], peer)] += 1
                k = attempts[(hop["msg_id"], peer)]
                add(hop, hop["started_at"], "attempt", f"BUS => {peer}  attempt {k}: {_result(hop)}{_ms(hop)}",
                    peer=peer, attempt=k, **outcome)
            else:
                add(hop, hop["started_at"], "call", f"BUS => {peer}  {_result(hop)}{_ms(hop)}", peer=peer, **outcome)
        else:
            kind = ADM_KINDS.get(hop["status"], hop["status"])
            peer = hop.get("target")
            if hop["status"] == "replayed":
                attempts[(hop["msg_id"], peer)] = 0
            text = mask(hop.get("route")) or kind
            if peer and hop["status"] in ("dead", "replayed", "discarded"):
                text = f"{peer}: {text}"
            add(hop, hop["started_at"], kind, text, peer=peer, by=hop.get("source"), **outcome)
    events.sort(key=lambda e: e["at"])   # stable: hops of one instant keep the journal's order
    now = [dict(id=r["id"], message=messages[r["msg_id"]]["n"] if r["msg_id"] in messages else None,
                trans_ido=r.get("trans_ido"), peer=r["peer_name"], status=r["status"], attempts=r["attempts"],
                rsp_code=r.get("rsp_code"), next_attempt_at=as_utc(r.get("next_attempt_at")),
                delivered_at=as_utc(r.get("delivered_at")),
                last_error=mask(r.get("last_error")) if r.get("last_error") else None) for r in outbox]
    return dict(messages=list(messages.values()), events=events, outbox=now)


def render(trace: dict, key: str) -> list[str]:
    """The lines of a trace, for a person: the messages, the timeline, the outbox now."""
    lines = [f"Flow {key}: {len(trace['messages'])} message(s), {len(trace['events'])} event(s)"]
    for m in trace["messages"]:
        keys = "".join(f" {label}={m[k]}" for label, k in (("number", "msisdn"), ("serial", "serial"),
                                                              ("order", "order_id")) if m.get(k))
        lines.append(f"  #{m['n']} {m['service']}.{m['operation']} from {m['caller'] or '?'} "
                     f"({m['delivery']}) TRANS_IDO={m['trans_ido']}{keys}")
    lines.append("")
    for e in trace["events"]:
        when = e["at"].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if e["at"] else "?"
        lines.append(f"{when}  #{e['message']} {e['kind']:<13} {e['text']}")
        if e.get("reason") and e["kind"] in ("answer", "call", "attempt", "dead letter", "discard"):
            lines.append(f"{'':30}reason: {e['reason']}")
    if trace["outbox"]:
        lines += ["", "Outbox now:"]
        for r in trace["outbox"]:
            state = f"{r['status']} after {r['attempts']} attempt(s)"
            if r["status"] == "delivered" and r.get("rsp_code"):
                state += f", the peer answered {r['rsp_code']}"
            if r["status"] == "pending" and r.get("next_attempt_at"):
                state += f", next attempt at {r['next_attempt_at']:%H:%M:%S}"
            line = f"  outbox {r['id']} #{r['message']} -> {r['peer']}: {state}"
            if r["status"] in ("dead", "pending", "discarded") and r.get("last_error"):
                line += f"  ({r['last_error']})"
            lines.append(line)
    return lines


def _result(hop: dict) -> str:
    code = hop.get("rsp_code")
    if hop.get("fault_code"):
        return f"{hop['status']} {hop['fault_code']}" + (f" ({code})" if code else "")
    return hop["status"] + (f" {code}" if code else "")


def _ms(hop: dict) -> str:
    return f" in {hop['elapsed_ms']:.0f} ms" if hop.get("elapsed_ms") is not None else ""

