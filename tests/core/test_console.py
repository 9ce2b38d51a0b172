"""Names from data reach the terminal as text: markup printed literally, control characters escaped."""
from __future__ import annotations

from vkit.core.console import print_table, shown


def test_control_characters_in_cells_and_titles_print_escaped(capsys):
    print_table("keys of \x1b]0;pwned\x07", ["name\r"], [["cam\x1b[2J.mp4"], ["[bold]x[/bold]"], [None]])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "cam\\x1b[2J.mp4" in out and "\\x1b]0;pwned\\x07" in out and "name\\x0d" in out
    assert "[bold]x[/bold]" in out  # markup stays text


def test_shown_keeps_ordinary_text_and_tabs():
    assert shown("Lecture [final]/clip 01.mp4") == "Lecture [final]/clip 01.mp4"
    assert shown(None) == "" and shown(3.5) == "3.5" and shown("a\tb") == "a\tb"
    assert shown("\x9b31m") == "\\x9b31m"  # the one-byte CSI too
