"""The report's building blocks as data: sections of figures, tables, notes and findings.

Section builders (``report``, ``report_answer``) fill these; the template
(``templates/report.html``) alone turns them into markup, escaping every text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import plotly.graph_objects as go
from markupsafe import Markup

PLOT_CONFIG = {"displaylogo": False, "responsive": True}


@dataclass(frozen=True)
class Figure:
    html: Markup  # Plotly's own markup: the one part rendered unescaped
    kind: Literal["figure"] = "figure"


@dataclass(frozen=True)
class Cell:
    """A table cell: its text, an optional second line, and how to style them."""

    text: str
    sub: str = ""  # a smaller second line (a difference and its interval)
    css: str = ""  # the second line's class: worse, better
    strong: bool = False


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    css: str = ""
    header: bool = True
    kind: Literal["table"] = "table"


@dataclass(frozen=True)
class Note:
    """A highlighted remark; `backticks` show as code, ``strong`` opens it in bold."""

    text: str
    strong: str = ""
    kind: Literal["note"] = "note"


@dataclass(frozen=True)
class Meta:
    text: str
    kind: Literal["meta"] = "meta"


@dataclass(frozen=True)
class FindingItem:
    tag: str  # helps, hurts, negligible, real but negligible, undecided, off
    sentence: str
    evidence: str

    @property
    def css(self) -> str:
        return self.tag.replace(" ", "-")


@dataclass(frozen=True)
class Findings:
    items: list[FindingItem]
    kind: Literal["findings"] = "findings"


Part = Figure | Table | Note | Meta | Findings


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    parts: list[Part] = field(default_factory=list)

    def figure(self, fig: go.Figure, suffix: str = "") -> None:
        div_id = f"fig-{self.id}{'-' + suffix if suffix else ''}"
        html = fig.to_html(
            full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG
        )
        self.parts.append(Figure(Markup(html)))

    def note(self, text: str, strong: str = "") -> None:
        self.parts.append(Note(text, strong))

    def meta(self, text: str) -> None:
        self.parts.append(Meta(text))

    def table(
        self, headers: list[str], rows: list[list[Cell]], *, css: str = "", header: bool = True
    ) -> None:
        self.parts.append(Table(headers, rows, css, header))
