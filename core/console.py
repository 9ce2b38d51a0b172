"""vkit's terminal output through rich, where every name is shown as the text it is.

Rich reads ``[...]`` as markup and ``:name:`` as an emoji code, so a file
``Lecture [final]/bad.mp4`` would print as ``Lecture /bad.mp4`` and
``vkit recommend --user '[/bold]'`` would raise ``MarkupError``. Paths, users,
items, sessions and error messages come from data and from the user, so vkit's
consoles parse neither markup nor emoji codes (tables, titles and lines alike);
style, where wanted, is given by rich ``Text``/``Style`` objects, never by
brackets in a string.

Example::

    from vkit.core.console import console
    console().print(f"note: unknown user {user!r}")   # '[red]u0003' prints as '[red]u0003'
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(value: Any) -> str:
    """``value`` as terminal text: ``None`` is empty, control characters (ESC, BEL, CR...) print escaped.

    A file name or tensor key holding ``\\x1b[2J`` would otherwise clear the screen or forge output.

    Example::

        shown("cam\\x1b[2J.mp4")   # 'cam\\\\x1b[2J.mp4': the escape printed, never sent
    """
    text = "" if value is None else str(value)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def console(*, stderr: bool = False, **kwargs: Any) -> Any:
    """A rich ``Console`` that prints every string literally (no markup, no emoji codes, no highlighting).

    Args:
        stderr: write to stderr (progress bars) instead of stdout.
        **kwargs: more ``rich.console.Console`` arguments (e.g. ``width``).

    Example::

        console().print("Lecture [final]/bad.mp4")   # Lecture [final]/bad.mp4
    """
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, markup=False, emoji=False, **kwargs)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a titled table on stdout, every cell as text (``None`` as empty, controls escaped), long cells folded.

    Example::

        print_table("runs", ["id", "task"], [[3, "medical-diagnosis"]])
    """
    from rich.table import Table

    table = Table(title=shown(title), title_justify="left")
    for column in columns:
        table.add_column(shown(column), overflow="fold")
    for row in rows:
        table.add_row(*[shown(v) for v in row])
    console().print(table)


__all__ = ["console", "print_table", "shown"]
