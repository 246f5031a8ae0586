"""A run's compact HTML summary, for Jupyter's rich display (``Run._repr_html_``, ``ApiRun._repr_html_``).

Imports nothing: a notebook showing a run pays only for building a short string. Every piece of user
text (names, paths, keys, values, the URL) is escaped, so a run named ``<script>`` shows as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_SUMMARY = 12  # summary keys shown; the run's page has them all
MAX_VALUE = 80  # characters of a shown value


def escape(text: str) -> str:
    """``text`` safe inside HTML element content and double- or single-quoted attribute values."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
    )


def _value(value: Any) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "\u2026"


def run_html(*, kind: str, name: str, path: str, state: str, url: str, summary: Mapping[str, Any]) -> str:
    """The summary: the run's name (a link to its page when it has a URL), path, state, and the first
    ``MAX_SUMMARY`` summary values."""
    # Only a web address becomes a link: a "javascript:" URL stays text, whatever the store says.
    if url.startswith(("http://", "https://")):
        title = f'<a href="{escape(url)}" target="_blank" rel="noopener">{escape(name)}</a>'
        link = f'<div><a href="{escape(url)}" target="_blank" rel="noopener">{escape(url)}</a></div>'
    else:
        title, link = escape(name), ""
    rows = "".join(
        f"<tr><td>{escape(str(key))}</td><td>{escape(_value(value))}</td></tr>"
        for key, value in list(summary.items())[:MAX_SUMMARY]
    )
    more = len(summary) - MAX_SUMMARY
    table = f"<table>{rows}</table>" if rows else ""
    if more > 0:
        table += f"<div>\u2026 and {more} more</div>"
    return (
        f'<div class="tracklog-run"><strong>{escape(kind)} {title}</strong> '
        f"<code>{escape(path)}</code> ({escape(state)}){link}{table}</div>"
    )
