"""The embedded runtime: the pipeline in one process, state in dicts, results in chDB.

No servers: this is what ``driftline demo`` and ``driftline replay`` run, and what a user runs
to backfill history. It batches messages, drives the :class:`Pipeline`, and writes every batch's
rows through the same sink the Faust runtime uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from driftline.reference import ModelReference
from driftline.storage import Store
from driftline.streams.pipeline import Message, Output, Pipeline
from driftline.streams.sinks import StoreSink


@dataclass
class RunSummary:
    """Counts of what a run processed and produced (the pipeline's counters at the end)."""

    messages: int = 0
    predictions: int = 0
    ground_truth: int = 0
    labeled: int = 0
    dead_letters: int = 0
    metric_rows: int = 0
    drift_rows: int = 0
    alerts: int = 0


def _batches(messages: Iterable[Message], size: int) -> Iterator[list[Message]]:
    iterator = iter(messages)
    while batch := list(islice(iterator, size)):
        yield batch


class EmbeddedRunner:
    """Run messages through a :class:`Pipeline` and store the results.

    Parameters
    ----------
    references
        Per model, its spec and reference.
    store
        Where rows go; ``None`` computes without storing (benchmarks, dry runs).
    batch_size
        Messages per pipeline batch.
    now_ms
        Wall clock for the future-timestamp check; pass a fixed clock to replay history.
    on_output
        Called with each batch's :class:`Output` and the number of messages it consumed, after
        it is stored (progress, live reports).
    """

    def __init__(
        self,
        references: dict[str, ModelReference],
        store: Store | None = None,
        batch_size: int = 20_000,
        now_ms: Callable[[], int] | None = None,
        on_output: Callable[[Output, int], None] | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.pipeline = Pipeline(references, now_ms=now_ms)
        self.sink = None if store is None else StoreSink(store, references)
        self.batch_size = batch_size
        self.on_output = on_output

    def _handle(self, out: Output, consumed: int) -> None:
        if self.sink is not None:
            self.sink.write(out)
        if self.on_output is not None:
            self.on_output(out, consumed)

    def run(self, messages: Iterable[Message]) -> RunSummary:
        """Process every message, then close all windows (the stream is finite)."""
        for batch in _batches(messages, self.batch_size):
            self._handle(self.pipeline.process(batch), len(batch))
        self._handle(self.pipeline.finish(), 0)
        return RunSummary(**self.pipeline.counts)
