"""Matplotlib figures as inline SVG for the HTML report: one draw each, text kept as text, no network.

The ``eval`` extra brings matplotlib; :func:`figure_module` says how to install it when it is missing.
"""

from __future__ import annotations

import importlib
import io
from typing import Any

from promptask.errors import ConfigurationError

__all__ = ["figure_module", "margins", "svg"]


def figure_module() -> Any:
    """``matplotlib.figure``, or a ConfigurationError that names the extra."""
    try:
        figure = importlib.import_module("matplotlib.figure")
    except ImportError:
        raise ConfigurationError("the HTML report needs matplotlib: pip install 'promptask[eval]'") from None
    return figure


def svg(fig: Any, salt: str) -> str:
    """The figure as an ``<svg>`` element (no XML prologue); ``salt`` keeps its ids apart from other plots'."""
    matplotlib = importlib.import_module("matplotlib")
    buffer = io.StringIO()
    # Text stays text (drawn by the page's own fonts): smaller and faster than glyph outlines, and still offline.
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg")  # margins are set per plot: one draw, where a tight box takes two
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def margins(fig: Any, *, below: list[str], beside: list[str], right: float = 0.15) -> None:
    """Grow the figure by the room its tick labels need (rotated ones below, plain ones beside) and the titles."""
    width, height = fig.get_size_inches()
    char = 0.075  # inches per character at the default 10 pt
    bottom = 0.5 + 0.6 * char * max((len(str(t)) for t in below), default=1)  # at 35 degrees: 0.6 of the length
    left = 0.5 + char * max((len(str(t)) for t in beside), default=1)
    top = 0.35
    fig.set_size_inches(width + left + right, height + bottom + top)
    full_w, full_h = width + left + right, height + bottom + top
    fig.subplots_adjust(left=left / full_w, right=1 - right / full_w, bottom=bottom / full_h, top=1 - top / full_h)
