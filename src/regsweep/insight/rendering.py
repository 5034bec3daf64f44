"""Templates: the report's HTML and the dashboard note's Markdown, apart from the data.

Jinja2 with autoescaping for HTML, so a study name, a column name or a fail reason can
never become markup; figures (Plotly's own HTML) are the one thing marked safe.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

_CODE = re.compile(r"`([^`]+)`")


def inline_code(text: str) -> Markup:
    """Escape ``text``, then show `backticked` spans as code (a note's commands)."""
    escaped = str(escape(text))
    return Markup(_CODE.sub(r"<code>\1</code>", escaped))


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("regsweep.insight", "templates"),
        autoescape=select_autoescape(["html"], default_for_string=False),
        undefined=StrictUndefined,  # a missing value is a bug, not an empty string
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["code"] = inline_code
    return env


def render(template: str, /, **context: Any) -> str:
    """Render ``template`` (a file in ``insight/templates``) with ``context``."""
    return environment().get_template(template).render(**context)
