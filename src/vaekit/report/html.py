"""Self-contained HTML pages: images embedded as base64 PNG, inline CSS, no scripts, no network.

A page is a title plus a list of :class:`Section` (an ``id`` for links and tests, a heading, and HTML
body built with the helpers below, which escape all text).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #222;
       background: #fafafa; line-height: 1.45; }
header { background: #23395d; color: white; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
header p { margin: 0; opacity: 0.85; }
nav { padding: 8px 32px; background: #e9edf3; font-size: 14px; position: sticky; top: 0; z-index: 1; }
nav a { margin-right: 14px; color: #23395d; text-decoration: none; }
main { padding: 8px 32px 40px 32px; max-width: 1400px; }
section { background: white; border: 1px solid #dde2ea; border-radius: 6px; padding: 12px 20px;
          margin: 16px 0; }
h2 { font-size: 19px; margin: 4px 0 8px 0; color: #23395d; }
.caption { color: #555; font-size: 14px; margin: 4px 0 10px 0; }
figure { margin: 8px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; }
table { border-collapse: collapse; font-size: 14px; margin: 6px 0; }
th, td { border: 1px solid #dde2ea; padding: 4px 10px; text-align: left; }
th { background: #f1f4f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; padding: 10px; font-size: 13px; overflow-x: auto; }
.row { display: flex; flex-wrap: wrap; gap: 16px; }
.row figure { flex: 1 1 380px; }
"""


@dataclass
class Section:
    """One section of a page: ``id`` (HTML id, stable for tests), heading ``title`` and ``body`` HTML."""

    id: str
    title: str
    body: str


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def image(png: bytes, alt: str, caption: str | None = None) -> str:
    """An embedded PNG figure (data URI) with alt text and an optional caption."""
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def row(*items: str) -> str:
    """Figures side by side (wrapping on narrow screens)."""
    return '<div class="row">' + "".join(items) + "</div>"


def para(text: str) -> str:
    return f'<p class="caption">{esc(text)}</p>'


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def fmt(value: Any) -> str:
    """Numbers to 4 significant decimals, None as an em dash, nested values as compact JSON."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) >= 1e4 or (value != 0 and abs(value) < 1e-3) else f"{value:.4f}"
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 for v in value):
        return "[" + ", ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in value) + "]"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table; numeric cells are right-aligned and formatted with :func:`fmt`."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for r in rows:
        cells = "".join(
            f'<td class="num">{esc(fmt(v))}</td>' if isinstance(v, (int, float)) and not isinstance(v, bool)
            else f"<td>{esc(fmt(v))}</td>" for v in r)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole document: header, a navigation bar linking every section, then the sections."""
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>"
            f"<body><header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
            f"<nav>{nav}</nav><main>{body}</main></body></html>\n")
