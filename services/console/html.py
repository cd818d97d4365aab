"""HTML for the console: escaping, the page layout, tables and forms. No JavaScript.

Everything a page shows that does not come from this module's own constants goes through
:func:`e` (or :func:`h`, which escapes every argument): journal rows, the XML of messages
(attacker-controlled), reasons, names. A value already made into markup by these helpers is a
:class:`Markup` and is not escaped twice.
"""
from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from pathlib import Path

CSS_FILE = Path(__file__).with_name("console.css")


class Markup(str):
    """Text that is HTML already (made by the helpers here). Joined with plain text, the plain
    text is escaped."""

    def __add__(self, other) -> "Markup":
        return Markup(str.__add__(self, e(other)))

    def __radd__(self, other) -> "Markup":
        return Markup(str.__add__(e(other), self))


def e(value) -> Markup:
    """``value`` as HTML text: escaped, unless it is Markup; None is empty."""
    if isinstance(value, Markup):
        return value
    return Markup(escape("" if value is None else str(value), quote=True))


def h(template: str, *args, **kwargs) -> Markup:
    """``template`` (a constant of this package) with every argument escaped."""
    return Markup(template.format(*(e(a) for a in args), **{k: e(v) for k, v in kwargs.items()}))


def join(parts) -> Markup:
    return Markup("".join(e(p) for p in parts))


def when(moment: datetime | None, seconds: bool = True) -> str:
    """A journal time (UTC) as people read it: ``2026-11-27 13:59:02.651``."""
    if moment is None:
        return ""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if seconds else moment.strftime("%Y-%m-%d %H:%M")


def fen(amount: int | None) -> str:
    """An amount in fen as yuan, exactly: 12345 -> 123.45."""
    if amount is None:
        return ""
    sign, (yuan, cents) = "-" if amount < 0 else "", divmod(abs(int(amount)), 100)
    return f"{sign}{yuan:,}.{cents:02d}"


def table(headers, rows, empty: str = "nothing to show", cls: str = "") -> Markup:
    """A table: ``headers`` text, ``rows`` of cells (text, escaped here, or Markup); a row given
    as ``(cells, css_class)`` gets that class."""
    body = []
    for row in rows:
        css = ""
        if isinstance(row, tuple) and len(row) == 2 and isinstance(row[1], str) and isinstance(row[0], (list, tuple)):
            row, css = row
        body.append(h("<tr class='{}'>", css) + join(h("<td>{}</td>", c) for c in row) + Markup("</tr>"))
    if not body:
        return h("<p class='empty'>{}</p>", empty)
    head = join(h("<th>{}</th>", c) for c in headers)
    return h("<table class='{}'><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", cls, head, join(body))


def link(href: str, text) -> Markup:
    return h("<a href='{}'>{}</a>", href, text)


def hidden(name: str, value: str) -> Markup:
    return h("<input type='hidden' name='{}' value='{}'>", name, value)


def post_button(action: str, label: str, csrf: str, cls: str = "", fields: dict | None = None) -> Markup:
    """A form that POSTs (with the CSRF token) when its one button is pressed."""
    extra = join(hidden(k, v) for k, v in (fields or {}).items())
    return h("<form method='post' action='{}' class='inline'>{}{}<button type='submit' class='{}'>{}</button>"
             "</form>", action, hidden("csrf", csrf), extra, cls, label)


NAV = (("", "Health"), ("routes", "Routes & phases"), ("journal", "Journal"), ("dlq", "Dead letters"),
       ("reconciliation", "Reconciliation"), ("stats", "Statistics"))


def page(base: str, title: str, body, operator: str | None = None, csrf: str | None = None,
         section: str | None = None, notice: str | None = None, error: str | None = None) -> bytes:
    """A whole page: header with the navigation and the operator, the title, ``body``."""
    nav = Markup("")
    who = Markup("")
    if operator:
        nav = join(h("<a href='{}/{}' class='{}'>{}</a>", base, path, "here" if path == section else "", label)
                   for path, label in NAV)
        who = h("<span class='who'>{}</span>", operator) + post_button(f"{base}/logout", "Log out", csrf or "")
    flash = (h("<p class='notice'>{}</p>", notice) if notice else Markup("")) + \
        (h("<p class='error'>{}</p>", error) if error else Markup(""))
    return h("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             "<meta name='viewport' content='width=device-width, initial-scale=1'>"
             "<title>{title} · bssbus console</title><link rel='stylesheet' href='{base}/static/console.css'>"
             "</head><body><header><a class='brand' href='{base}/'>bssbus console</a><nav>{nav}</nav>"
             "<div class='account'>{who}</div></header><main><h1>{title}</h1>{flash}{body}</main></body></html>",
             title=title, base=base, nav=nav, who=who, flash=flash, body=body).encode("utf-8")
