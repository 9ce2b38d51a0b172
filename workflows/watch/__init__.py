"""``vkit watch``: live scoring of streams (sources, rolling windows, one shared model, live events, alerts)."""
