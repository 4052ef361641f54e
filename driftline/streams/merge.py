"""Combine the partial windows of a partitioned stream into one result per window.

When predictions are spread over ``N`` partitions, each partition's :class:`Pipeline` (built
with ``finalize=False``) accumulates its share of every window and hands over the partial
window when its own watermark closes it, together with that watermark. A :class:`Merger`
keeps the partials of each (model, version, window) and tests the window once every partition's
watermark has passed its end: accumulators merge exactly, so the result is the one a single
pipeline would compute over the whole stream, and so are the alerts the merged rows raise.

Every update is idempotent, which is what makes an at-least-once transport safe: a partition
that restarts from a checkpoint sends some partials again; watermarks only move forward, a
drift window that has been tested ignores later copies, and a performance partial only replaces
one with fewer labeled rows.

Examples
--------
>>> merger = Merger({}, references={}, partitions=2)
>>> merger.partitions
2

"""

from __future__ import annotations

from functools import reduce
from typing import Any

from driftline.reference import ModelReference
from driftline.streams.alerts import AlertEngine
from driftline.streams.pipeline import Output
from driftline.streams.processors import (
    DriftWindow,
    PerformanceWindow,
    window_drift_rows,
    window_performance_rows,
)
from driftline.streams.state import State
from driftline.streams.windows import is_closed


class Merger:
    """Merge partial windows from ``partitions`` partitions and emit their result rows.

    Parameters
    ----------
    state
        The mapping holding all merge state.
    references
        Per model, its spec and reference.
    partitions
        How many partitions feed the merger; a window is final only when all of them have
        passed it.
    alert_state
        The mapping of the alert engine that evaluates the merged rows (the merger owns every
        window of its models, so it is where their alerts are decided).
    """

    def __init__(
        self, state: State, references: dict[str, ModelReference], partitions: int, alert_state: State | None = None
    ):
        if not isinstance(partitions, int) or partitions < 1:
            raise ValueError(f"partitions must be an int >= 1, got {partitions!r}")
        self.state = state
        self.references = references
        self.partitions = partitions
        self.alerts = AlertEngine({} if alert_state is None else alert_state, {m: r.spec for m, r in references.items()})
        # Alerts of rules the specs no longer have, resolved with the next settle's output.
        self._retired = self.alerts.retire()

    def take(
        self,
        partition: int,
        model: str,
        watermarks: tuple[int, int],
        drift_windows: list[DriftWindow],
        perf_windows: list[PerformanceWindow],
    ) -> None:
        """Hold one partition's partial windows and watermarks; :meth:`settle` emits what they
        made final. Taking several partials before settling emits one revision of a window's
        metrics for all of them instead of one per partial."""
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition must be in [0, {self.partitions}), got {partition}")
        key = ("wm", model, partition)
        old = self.state.get(key, (-1, -1))
        self.state[key] = (max(old[0], watermarks[0]), max(old[1], watermarks[1]))
        for window in drift_windows:
            wkey = ("drift", model, window.version, window.start)
            if ("drift_done",) + wkey[1:] in self.state:
                continue
            parts = dict(self.state.get(wkey, {}))
            parts[partition] = window
            self.state[wkey] = parts
        for window in perf_windows:
            wkey = ("perf", model, window.version, window.start)
            if ("perf_done",) + wkey[1:] in self.state:
                continue
            parts = dict(self.state.get(wkey, {}))
            held = parts.get(partition)
            if held is None or window.n_labeled >= held.n_labeled:
                parts[partition] = window
                self.state[wkey] = parts

    def settle(self, models: list[str]) -> Output:
        """The rows of the windows of ``models`` that became final or gained labels, and the
        alerts they raise."""
        out = Output()
        for model in models:
            self._settle(model, out)
        out.alerts, out.retrain_requests = self.alerts.evaluate(out.drift_results, out.window_metrics)
        if self._retired:
            out.alerts[:0], self._retired = self._retired, []
        return out

    def watermarks(self, model: str) -> tuple[int, int] | None:
        """The lowest (drift, performance) watermark over all partitions; ``None`` until every
        partition has reported one."""
        marks = [self.state.get(("wm", model, p)) for p in range(self.partitions)]
        if any(mark is None for mark in marks):
            return None
        return min(m[0] for m in marks), min(m[1] for m in marks)

    def _settle(self, model: str, out: Output) -> None:
        marks = self.watermarks(model)
        if marks is None:
            return
        drift_mark, perf_mark = marks
        ref = self.references[model]
        spec = ref.spec
        horizon = spec.window_ms + spec.allowed_lateness_ms + spec.label_ttl_ms
        mine = sorted((k for k in list(self.state.keys()) if len(k) == 4 and k[1] == model), key=lambda k: (k[3], k[2], k[0]))
        for key in mine:
            kind, _, version, start = key
            if kind == "drift" and is_closed(start, drift_mark, spec.window_ms, spec.allowed_lateness_ms):
                out.drift_results.extend(window_drift_rows(ref, _merged(self.state.pop(key))))
                self.state[("drift_done", model, version, start)] = True
            elif kind == "perf" and is_closed(start, perf_mark, spec.window_ms, spec.allowed_lateness_ms):
                parts = self.state[key]
                n_labeled = sum(part.n_labeled for part in parts.values())
                revision_key = ("perf_revision", model, version, start)
                if self.state.get(revision_key) != n_labeled:
                    metrics, target = window_performance_rows(ref, _merged(parts))
                    out.window_metrics.extend(metrics)
                    out.drift_results.extend(target)
                    self.state[revision_key] = n_labeled
                if start + spec.window_ms + spec.label_ttl_ms <= perf_mark:
                    del self.state[key]
                    del self.state[revision_key]
                    self.state[("perf_done", model, version, start)] = True
            elif kind in ("drift_done", "perf_done") and start + 2 * horizon <= min(drift_mark, perf_mark):
                # A partition replaying from its checkpoint can resend partials of windows
                # already merged; twice the longest a window lives is far beyond any replay.
                del self.state[key]


def _merged(parts: dict[int, Any]) -> Any:
    return reduce(lambda a, b: a.merge(b), (parts[p] for p in sorted(parts)))
