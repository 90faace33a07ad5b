"""How long to wait: the retry backoff and the poll jitter, each written once.

Both are jittered so that many watches, targets and daemons that failed (or started) at
the same moment do not all come back at the same moment.
"""

from __future__ import annotations

import random

MAX_DOUBLINGS = 64  # 2.0 ** 64 times any base is past every cap; more would overflow a float
POLL_JITTER_SHARE = 0.05  # of the interval ...
POLL_JITTER_MAX = 5.0     # ... but never more than this many seconds


def ceiling(base: float, cap: float, retries: int) -> float:
    """The longest wait after ``retries`` earlier retries: ``base`` doubled each time, up
    to ``cap``."""
    return min(cap, base * 2.0 ** min(retries, MAX_DOUBLINGS))


def backoff(base: float, cap: float, retries: int) -> float:
    """The wait before the next try, with ``retries`` tries already retried: half to all
    of :func:`ceiling`, so that retries do not bunch up."""
    top = ceiling(base, cap, retries)
    return random.uniform(top / 2, top)


def poll_jitter_max(interval: float) -> float:
    """The most :func:`poll_jitter` adds to a poll of a watch polled every ``interval``."""
    return min(interval * POLL_JITTER_SHARE, POLL_JITTER_MAX)


def poll_jitter(interval: float) -> float:
    """Seconds to delay a first (or a skipped) poll by: it spreads the polls of many
    watches and many daemons."""
    return random.uniform(0, poll_jitter_max(interval))
