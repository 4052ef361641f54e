"""The garbage-collector settings of a driftline process that streams events.

CPython's cyclic collector runs a young collection every 700 new container objects, and every
few of those the older generations too, each time walking every tracked object they hold. A
stream processor makes many short-lived containers per event (rows, tuples, lists of a batch's
columns) and keeps a large, stable heap of start-up objects (Faust, aiokafka, scipy, pandas,
the references). In a Faust worker draining a backlog, collections took about a tenth of the
process's CPU time, mostly walking start-up objects that can never become garbage; see
docs/benchmarks.md for what these settings changed.

:func:`settle_heap` is what ``driftline worker``, ``replay`` and ``demo`` call once they are set
up: it moves everything alive to the permanent generation (:func:`gc.freeze`), which later
collections skip, and lets ``young_threshold`` containers accumulate before a young collection.
Cycles are still collected; they are found a little later.

Examples
--------
It changes the whole process (tests run it in a subprocess):

>>> settle_heap()  # doctest: +SKIP
>>> gc.get_threshold()[0], gc.get_freeze_count() > 0  # doctest: +SKIP
(20000, True)
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "settle_heap"]

# Measured on the embedded pipeline (docs/benchmarks.md): 20,000 was faster than CPython's 700
# and than 100,000, whose young generation no longer fits the processor's caches.
YOUNG_THRESHOLD = 20_000


def settle_heap(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Freeze the objects alive now and collect young objects every ``young_threshold``
    allocations (the older generations keep CPython's ratios)."""
    if isinstance(young_threshold, bool) or not isinstance(young_threshold, int) or young_threshold < 1:
        raise ValueError(f"young_threshold must be an int >= 1, got {young_threshold!r}")
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
