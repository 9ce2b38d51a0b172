"""The live page of ``vkit watch --ui``: each stream's rolling score chart, its events with their keyframe and the
class summary, read from the store and pushed to the browser by server-sent events.

Example::

    from vkit.workflows.watch_ui import start_live_page

    page = start_live_page("sqlite:///vkit.db", run_id, "127.0.0.1", 8765)
    print("live page:", page.url)
    ...
    page.stop()
"""
from __future__ import annotations

from vkit.workflows.watch_ui.server import LivePage, build_app, start_live_page

__all__ = ["LivePage", "build_app", "start_live_page"]
