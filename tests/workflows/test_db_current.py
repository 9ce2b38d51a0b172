"""``vkit db current`` (the installed command) shows every schema's revision: core's, then each plugin's own tables."""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from vkit_cli import vkit


def _lines(url: str, cwd: Path) -> list[str]:
    return vkit("--db", url, "db", "current", cwd=cwd).stdout.splitlines()


def test_db_current_shows_core_and_plugin_revisions(tmp_path: Path) -> None:
    from vkit.core.store import open_store
    from vkit.core.store.migrate import head_revision
    from vkit.core.store.plugin_schema import plugin_head
    from vkit.plugins.recommendation.store import SCHEMA

    db = tmp_path / "v.db"
    url = f"sqlite:///{db}"
    core, plugin = head_revision(), plugin_head(SCHEMA)
    none = _lines(url, tmp_path)                                    # no store: nothing is created
    assert "revision (no store)" in none[0] and not db.exists()
    assert re.fullmatch(r"  recommendation tables  revision \(none\)  \(not made yet: .*vkit db upgrade.*\)", none[1])

    open_store(url).close()                                         # core's tables only
    shown = _lines(url, tmp_path)
    assert shown[0].endswith(f"revision {core}  (up to date)")
    assert shown[1].startswith("  recommendation tables  revision (none)  (not made yet")

    vkit("--db", url, "db", "upgrade", cwd=tmp_path)
    shown = _lines(url, tmp_path)
    assert shown[0].endswith(f"revision {core}  (up to date)")
    assert shown[1] == f"  recommendation tables  revision {plugin}  (up to date)"

    with sqlite3.connect(db) as conn:                               # migrated by a newer plugin
        conn.execute("UPDATE alembic_version_recommendation SET version_num = '0999'")
    shown = _lines(url, tmp_path)
    assert shown[0].endswith("(up to date)")
    assert shown[1].startswith("  recommendation tables  revision 0999  (newer than this plugin's head")
