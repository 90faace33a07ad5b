"""Suspect responses: a model list that lost too much at once is held, not diffed.

A proxy that returns an empty list, or an upstream hiccup that drops half the catalogue,
must not page anyone with "every model removed" (and then "every model added").  Such a
response is held; it becomes the baseline only when the very same list comes back
``confirm_polls`` times in a row (the app counts them in the state database, so the count
survives restarts).  Pure: values in, values out.
"""

from __future__ import annotations

from watcher.snapshot import Snapshot


def suspicion(baseline: Snapshot | None, current: Snapshot, max_removed_pct: float) -> str | None:
    """Why ``current`` should not be trusted yet, or None."""
    if not current.models:
        return "the response has an empty model list"
    if baseline is None or not baseline.models:
        return None
    removed = len(baseline.models.keys() - current.models.keys())
    pct = removed / len(baseline.models) * 100
    if pct > max_removed_pct:
        return (f"{removed} of {len(baseline.models)} models ({pct:.0f}%) are missing, more than "
                f"max_removed_pct ({max_removed_pct:g}%)")
    return None
