"""Alerts of ``vkit watch``: JSON lines on stdout, and a webhook fed from a bounded queue on its own thread.

Every alert is stored first (``alerts`` row, ``pending``) by the writer, in
the transaction that commits its event; :class:`WebhookSender` then POSTs it
(JSON body) with retries and backoff and marks the row ``delivered`` or
``failed``. Scoring never waits for it: :meth:`WebhookSender.offer` never
blocks (a full queue leaves the alert ``pending`` in the store and counts it),
and when the watch ends the sender is given a moment, then left: what it did
not deliver stays ``pending`` (or ``failed`` with its error) in the store.

Example::

    sender = WebhookSender("http://hooks.local/vkit", store, retries=3, timeout=2.0)
    sender.start()
    sender.offer(alert_id, {"type": "event", "action": "open", ...})
    sender.close(wait=2.0)
"""
from __future__ import annotations

import json
import queue
import threading
import urllib.error
import urllib.request
from typing import Any

from vkit.registry.errors import ConfigError


def check_webhook(url: str) -> str:
    """``url`` if it is an ``http(s)://`` URL, else a :class:`ConfigError`."""
    from urllib.parse import urlsplit

    from vkit.core.store.engine import mask_secrets

    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--webhook {mask_secrets(str(url))!r}: expected an http:// or https:// URL")
    return url


class WebhookSender(threading.Thread):
    """POSTs stored alerts to ``url`` with retries and exponential backoff; never blocks the caller.

    Args:
        url: the webhook (``http(s)://``).
        store: the open store (rows updated from this thread).
        queue_size: alerts that may wait; beyond it an alert stays ``pending`` in the store (``overflow`` counts).
        retries: tries after the first before an alert is ``failed``.
        timeout: seconds one POST may take.
        backoff: first wait between tries (doubles each time, at most 30 s).
    """

    def __init__(self, url: str, store: Any, *, queue_size: int = 1000, retries: int = 5, timeout: float = 5.0,
                 backoff: float = 0.5) -> None:
        super().__init__(name="vkit-watch-webhook", daemon=True)
        self.url, self.store = check_webhook(url), store
        self.retries, self.timeout, self.backoff = int(retries), float(timeout), float(backoff)
        self.queue: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue(maxsize=max(1, int(queue_size)))
        self.stopping = threading.Event()
        self.delivered = self.failed = self.overflow = 0

    def offer(self, alert_id: int, payload: dict[str, Any]) -> bool:
        """Queue a stored alert for delivery; ``False`` (it stays ``pending`` in the store) when the queue is full."""
        try:
            self.queue.put_nowait((alert_id, payload))
            return True
        except queue.Full:
            self.overflow += 1
            return False

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                alert_id, payload = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self._deliver(alert_id, payload)

    def _deliver(self, alert_id: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, default=str).encode()
        wait, error = self.backoff, None
        for attempt in range(1, self.retries + 2):
            if self.stopping.is_set():
                break
            try:
                request = urllib.request.Request(self.url, data=body, method="POST",
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (checked scheme)
                    response.read(1024)
                self._mark(alert_id, "delivered", attempt, None)
                self.delivered += 1
                return
            except (urllib.error.URLError, OSError, ValueError) as err:
                error = _reason(err)
            self._mark(alert_id, "pending", attempt, error)
            if attempt <= self.retries and self.stopping.wait(wait):
                return  # the watch ended: the alert stays pending with its last error
            wait = min(wait * 2, 30.0)
        if not self.stopping.is_set():
            self._mark(alert_id, "failed", self.retries + 1, error)
            self.failed += 1

    def _mark(self, alert_id: int, status: str, attempts: int, error: str | None) -> None:
        import sqlalchemy as sa

        from vkit.core.store.engine import mask_secrets
        from vkit.core.store.models import Alert, utcnow
        from vkit.registry.errors import StoreError

        values: dict[str, Any] = dict(status=status, attempts=attempts,
                                      error=None if error is None else mask_secrets(error)[:2000])
        if status == "delivered":
            values["delivered_at"] = utcnow()
        try:
            with self.store.session() as session:
                session.execute(sa.update(Alert).where(Alert.id == alert_id).values(**values))
        except StoreError:  # the store is busy or gone: the row keeps its last state
            pass

    def close(self, wait: float = 2.0) -> None:
        """Let queued alerts go out for up to ``wait`` seconds, then stop (what is left stays in the store)."""
        import time

        deadline = time.monotonic() + max(0.0, wait)
        while not self.queue.empty() and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.05)
        self.stopping.set()
        self.join(timeout=max(0.1, deadline - time.monotonic()))  # a POST still hanging is left to its daemon thread


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"{type(err.reason).__name__}: {err.reason}"
    return f"{type(err).__name__}: {err}"


class JsonLines:
    """Prints one JSON object per line on stdout (``--json``), flushed at once."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, payload: dict[str, Any]) -> None:
        if self.enabled:
            import click

            click.echo(json.dumps(payload, default=str))


__all__ = ["JsonLines", "WebhookSender", "check_webhook"]
