"""Where a Faust worker's time goes: its per-partition work replayed in one process, no broker.

The credit-scoring scenario of ``bench/faust_worker.py`` is split into partitions the way the
broker's producer splits it (kafka-python's murmur2 of the ``event_id`` key) and fed to one
:class:`~driftline.streams.partitioned.PartitionRunner` per partition in rounds of fetch-sized
batches (``--fetch`` messages per round over all partitions, predictions and ground truth in
proportion, as a worker's fetch brings them). Each round times the worker's stages separately:

* ``pipeline``: ``PartitionRunner.process_sources`` (decode, validate, join, windows);
* ``pickle``: serialising the partial windows for the partials topic;
* ``merge``: ``PartitionRunner.process_partials`` (the merge of every partition's partials, the
  drift tests and metric rows of closed windows, alerts);
* ``sink``: handing the rows to a :class:`~driftline.streams.sinks.StoreSink` over an embedded
  chDB store in a temporary directory, holding raw rows back in blocks of 50,000 as the worker's
  default ``store_batch_rows`` does (conversion to Arrow; the inserts run on the sink's writer
  thread, which ``flush`` waits for at the end of the run).

Usage::

    python bench/worker_stages.py [--events 100000] [--partitions 4] [--fetch 25000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
from kafka.partitioner.default import murmur2

from driftline.config import load_spec
from driftline.reference import load_reference
from driftline.scorers.scenario import CreditScenario
from driftline.storage import open_store
from driftline.streams.partitioned import PartitionRunner, partition_for
from driftline.streams.pipeline import GROUND_TRUTH, PREDICTION, MessageBatch, Output
from driftline.streams.sinks import StoreSink

STAGES = ("pipeline", "pickle", "merge", "sink")


def split(path: Path, partitions: int) -> list[list[bytes]]:
    """The file's events per partition, as the default Kafka partitioner assigns their keys."""
    parts: list[list[bytes]] = [[] for _ in range(partitions)]
    with open(path, "rb") as fh:
        for line in fh:
            value = line.rstrip(b"\n")
            key = orjson.loads(value)["event_id"].encode()
            parts[(murmur2(key) & 0x7FFFFFFF) % partitions].append(value)
    return parts


def run(references, inputs, partitions: int, fetch: int, sink: StoreSink) -> dict[str, float]:
    """One replay of every input on fresh runners; seconds per stage."""
    runners = [PartitionRunner(p, references, partitions) for p in range(partitions)]
    kinds = ((PREDICTION, "predictions"), (GROUND_TRUTH, "ground_truth"))
    total = sum(len(part) for per_kind in inputs for part in per_kind)
    # Per round and partition, each input's share of a fetch of `fetch` messages.
    steps = [max(1, round(fetch * sum(map(len, per_kind)) / total / partitions)) for per_kind in inputs]
    position = [[0] * len(kinds) for _ in range(partitions)]
    inbox: list[list[bytes]] = [[] for _ in range(partitions)]
    seconds = dict.fromkeys(STAGES, 0.0)
    moved = True
    while moved:
        moved = False
        out = Output()
        for p, runner in enumerate(runners):
            batch = MessageBatch()
            for k, (kind, topic) in enumerate(kinds):
                start = position[p][k]
                values = inputs[k][p][start:start + steps[k]]
                if values:
                    batch.add_run(kind, topic, values, f"{p}:", list(range(start, start + len(values))))
                    position[p][k] += len(values)
                    moved = True
            if not len(batch):
                continue
            t0 = time.perf_counter()
            part, partials = runner.process_sources(batch)
            t1 = time.perf_counter()
            for partial in partials:
                inbox[partition_for(partial.model, partitions)].append(partial.to_bytes())
            t2 = time.perf_counter()
            out.extend(part)
            seconds["pipeline"] += t1 - t0
            seconds["pickle"] += t2 - t1
        t0 = time.perf_counter()
        for p, runner in enumerate(runners):
            out.extend(runner.process_partials(inbox[p]))
            inbox[p] = []
        t1 = time.perf_counter()
        sink.write(out)
        seconds["merge"] += t1 - t0
        seconds["sink"] += time.perf_counter() - t1
    t0 = time.perf_counter()
    sink.flush()
    seconds["sink"] += time.perf_counter() - t0
    return seconds


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="predictions in the scenario")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--fetch", type=int, default=25_000, help="messages per round over all partitions")
    parser.add_argument("--runs", type=int, default=5, help="timed runs after one untimed warm-up")
    args = parser.parse_args(argv)
    if min(args.events, args.partitions, args.fetch, args.runs) < 1:
        parser.error("--events, --partitions, --fetch and --runs must be >= 1")
    with tempfile.TemporaryDirectory(prefix="bench-worker-stages-") as tmp:
        predictions, ground_truth, _, spec_path = CreditScenario(n_events=args.events, seed=args.seed).write_event_files(Path(tmp))
        spec = load_spec(spec_path)
        references = {spec.model: load_reference(spec)}
        inputs = [split(predictions, args.partitions), split(ground_truth, args.partitions)]
        messages = sum(len(part) for per_kind in inputs for part in per_kind)
        print(f"{messages:,} messages over {args.partitions} partitions, rounds of about {args.fetch:,}")
        # One store for every run (chDB opens one data directory per process); the rows of a run
        # replace those of the one before, as a replay's do.
        sink = StoreSink(open_store(Path(tmp) / "store"), references, 50_000)
        per_run = []
        for i in range(args.runs + 1):
            t0 = time.perf_counter()
            seconds = run(references, inputs, args.partitions, args.fetch, sink)
            wall = time.perf_counter() - t0
            if i == 0:
                print(f"warm-up: {wall:.2f} s (compiles the kernels; not counted)")
                continue
            us = {stage: s / messages * 1e6 for stage, s in seconds.items()}
            us["total"] = wall / messages * 1e6
            per_run.append(us)
            print(f"run {i}: " + ", ".join(f"{k} {v:.2f}" for k, v in us.items()) + " µs per message")
        print("median µs per message: " + ", ".join(
            f"{k} {statistics.median(r[k] for r in per_run):.2f}" for k in (*STAGES, "total")))


if __name__ == "__main__":
    main(sys.argv[1:])
