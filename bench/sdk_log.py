"""SDK — cost per logged prediction on the caller's thread, and sustained events/s into Kafka.

Each run opens a :class:`~driftline.scorers.sdk.DriftlineProducer` on a fresh topic of the local
broker, logs ``--events`` predictions (20 numeric features, score, action, role, latency, entity
id; 1,000 distinct feature dicts cycled) in a tight loop, timing every ``log_prediction`` call with
``perf_counter_ns``, then flushes. The caller cost is the median (and p90/p99) over all calls of
all runs; the throughput is events / (first call to end of flush), median over runs, with every
event delivered. In the same process the script times the contract's work per event —
``orjson.dumps`` of the event plus ``EventDecoder.decode_prediction`` of the bytes — which the SDK
does on its sender thread, not on the caller's, so the machine's speed can be judged.

    bash scripts/kafka.sh start
    python bench/sdk_log.py                      # 3 runs x 30,000 events, prints a markdown section
    python bench/sdk_log.py --update-docs        # also writes it into docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from importlib import metadata

if __name__ == "__main__" and "--without-crc32c" in sys.argv:
    sys.modules["crc32c"] = None  # type: ignore[assignment]  # kafka-python then uses its pure-Python CRC32C

import numpy as np
import orjson
from kafka import KafkaAdminClient

from driftline.events import EventDecoder
from driftline.scorers.sdk import DriftlineProducer

from _docs import cpu_model, update_section

SECTION = "## SDK — cost per logged prediction"
N_FEATURES = 20


def make_features(n: int = 1000, seed: int = 7) -> list[dict[str, float]]:
    values = np.random.default_rng(seed).normal(size=(n, N_FEATURES)).round(6)
    names = [f"f{i:02d}" for i in range(N_FEATURES)]
    return [dict(zip(names, row.tolist())) for row in values]


def timed_calls(
    producer: DriftlineProducer, features: list[dict[str, float]], events: int, discard: bool = False
) -> list[int]:
    clock = time.perf_counter_ns
    log = producer.log_prediction
    costs = []
    k = len(features)
    for n in range(events):
        t0 = clock()
        log(
            model="credit",
            version="v3",
            features=features[n % k],
            prediction=n & 1,
            score=0.25,
            action="approve",
            latency_ms=1.5,
            entity_id="cust-1",
        )
        costs.append(clock() - t0)
        if discard and n % 1000 == 999:
            # Nothing drains the queue here: empty it untimed so memory is reused as when sending.
            producer._queue.clear()
    return costs


def one_run(bootstrap: str, features: list[dict[str, float]], events: int) -> tuple[list[int], float, dict]:
    topic = f"bench-sdk-{uuid.uuid4().hex[:10]}"
    producer = DriftlineProducer(bootstrap, predictions_topic=topic, max_queue=max(events, 100_000))
    warm = producer.log_prediction(model="credit", version="v3", features=features[0], prediction=0)
    producer.flush(timeout=60)
    assert warm and producer.stats()["delivered"] == 1, producer.stats()
    start = time.perf_counter()
    costs = timed_calls(producer, features, events)
    producer.flush(timeout=600)
    elapsed = time.perf_counter() - start
    stats = producer.stats()
    producer.close(timeout=30)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()
    return costs, elapsed, stats


def idle_sender_costs(features: list[dict[str, float]], events: int) -> list[int]:
    """Caller cost while the sender has nothing to send: its first connection attempt (to a port
    where nothing listens) is still pending, so no GIL contention from sending."""
    producer = DriftlineProducer("127.0.0.1:1", bootstrap_timeout_ms=600_000, max_queue=events + 1)
    try:
        timed_calls(producer, features, 2000, discard=True)
        return timed_calls(producer, features, events, discard=True)
    finally:
        producer.close(timeout=0)


def contract_floor(features: list[dict[str, float]], calls: int = 30_000) -> float:
    decoder = EventDecoder()
    clock = time.perf_counter_ns
    costs = []
    for n in range(calls):
        event = {
            "schema_version": 1, "event_id": uuid.UUID(int=n).hex, "model": "credit", "version": "v3",
            "ts": 1767571200000, "features": features[n % len(features)], "prediction": n & 1,
            "action": "approve", "role": "champion", "host": "h", "entity_id": "cust-1",
            "score": 0.25, "latency_ms": 1.5,
        }
        t0 = clock()
        decoder.decode_prediction(orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY))
        costs.append(clock() - t0)
    return statistics.median(costs) / 1000


def machine() -> str:
    cpu = cpu_model()
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("kafka-python", "orjson", "msgspec")
    )
    try:
        crc = f"crc32c {metadata.version('crc32c')} (C CRC32C for kafka-python)"
    except metadata.PackageNotFoundError:
        crc = "crc32c not installed (kafka-python falls back to a pure-Python CRC32C)"
    return f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, {versions}, {crc}"


def section(argv: list[str], res: dict) -> str:
    cmd = " ".join(["python bench/sdk_log.py", *(a for a in argv if a != "--update-docs")])
    met = "met" if res["median_us"] <= 10 else "**not met on this machine as measured**"
    return f"""{SECTION}

Command: `bash scripts/kafka.sh start && {cmd}`

{res['runs']} runs, each on a fresh topic of the local single-node Kafka {res['kafka']} broker
(127.0.0.1, 4 partitions, `acks="all"`, `linger_ms=5`, no compression): `log_prediction` of
{res['events']:,} events with 20 numeric features (plus score, action, latency, entity id; about
{res['bytes']} bytes of JSON each) in a tight loop on one thread, every call timed with
`perf_counter_ns`, then `flush()`. All {res['total']:,} events were delivered
(`stats()["delivered"]`), none failed or dropped.

| what | median | p90 | p99 |
| --- | ---: | ---: | ---: |
| caller-thread cost of `log_prediction` (µs per call, all {res['total']:,} calls, sender busy) | **{res['median_us']:.1f}** | {res['p90_us']:.1f} | {res['p99_us']:.1f} |
| the same with the sender idle (nothing being sent: no contention for the GIL) | {res['idle_us'][0]:.1f} | {res['idle_us'][1]:.1f} | {res['idle_us'][2]:.1f} |
| the contract's work per event, on the sender thread: `orjson.dumps` + `EventDecoder.decode_prediction` (µs) | {res['floor_us']:.1f} | | |
| sustained events/s into the broker (first call to end of `flush`, median of runs) | {res['rate']:,.0f} | | |
| the same without the `crc32c` package (kafka-python's pure-Python CRC32C; 1 run) | {res['rate_pure']:,.0f} | | |

Target: caller cost <= 10 µs median — {met}: {res['median_us']:.1f} µs (p90 {res['p90_us']:.1f} µs).
On the caller's thread `log_prediction` makes an event id and a timestamp, checks every
top-level field (required, type, finite, `event_id` length, `ts` range), copies the feature dict
and appends to the queue. Encoding with orjson and the full contract decode — {res['floor_us']:.1f} µs
per event measured in the same process, more than the whole call — run on the SDK's sender
thread before the event is handed to kafka-python; an event refused there (a NaN or a list among
the features, a payload over 64 KiB) is never sent, counts as `failed` and goes to `on_error`
with the field named. Before this split the call did that work itself and cost 22.2 µs median
(21.1 µs with the sender idle) on the shared Xeon @ 2.50GHz of an earlier record. While sending, the tail (p99) is longer than with
the sender idle: the caller then contends for the GIL with the sender and kafka-python's I/O
thread, which run in the same process; it never waits on the network. The 2 cores also run the
broker (1-minute load average {res['load']:.1f} at the end of the run), so the figures swing between
runs. Sustained throughput is bounded by the sender thread —
the contract's work plus kafka-python's pure-Python `send()` — which shares the GIL with the
caller; without the `crc32c` package kafka-python also checksums every record batch in pure
Python (last table row), which is why [docs/sdk.md](sdk.md#install) asks for it.

Machine: {res['machine']}.
"""



def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("DRIFTLINE_KAFKA", "127.0.0.1:9092"))
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--without-crc32c", action="store_true", help="hide the crc32c package; print JSON")
    args = parser.parse_args(argv)

    features = make_features()
    if args.without_crc32c:
        rates = [args.events / one_run(args.bootstrap, features, args.events)[1] for _ in range(args.runs)]
        print(json.dumps({"rate": statistics.median(rates)}))
        return
    floor = contract_floor(features)
    idle = np.percentile(np.asarray(idle_sender_costs(features, args.events)) / 1000, [50, 90, 99])
    costs: list[int] = []
    rates = []
    for run in range(args.runs):
        run_costs, elapsed, stats = one_run(args.bootstrap, features, args.events)
        expected = {"sent": args.events + 1, "delivered": args.events + 1, "failed": 0, "dropped": 0, "queued": 0}
        if stats != expected:
            sys.exit(f"run {run}: not every event was delivered: {stats}")
        costs.extend(run_costs)
        rates.append(args.events / elapsed)
        print(f"run {run}: median {statistics.median(run_costs) / 1000:.2f} µs, {rates[-1]:,.0f} events/s", file=sys.stderr)
    pure = subprocess.run(
        [sys.executable, __file__, "--without-crc32c", "--runs", "1", "--events", str(args.events),
         "--bootstrap", args.bootstrap],
        check=True, capture_output=True, text=True,
    )
    quantiles = np.percentile(np.asarray(costs) / 1000, [50, 90, 99])
    sample = orjson.dumps({
        "schema_version": 1, "event_id": "0" * 32, "model": "credit", "version": "v3", "ts": 1767571200000,
        "features": features[0], "prediction": 1, "action": "approve", "role": "champion",
        "host": platform.node(), "entity_id": "cust-1", "score": 0.25, "latency_ms": 1.5,
    })
    kafka_version = os.environ.get("DRIFTLINE_KAFKA_VERSION", "4.1.1")
    res = {
        "runs": args.runs,
        "events": args.events,
        "total": args.events * args.runs,
        "bytes": len(sample),
        "median_us": quantiles[0],
        "p90_us": quantiles[1],
        "p99_us": quantiles[2],
        "floor_us": floor,
        "idle_us": idle,
        "rate": statistics.median(rates),
        "rate_pure": json.loads(pure.stdout.strip().splitlines()[-1])["rate"],
        "load": os.getloadavg()[0],
        "kafka": kafka_version,
        "machine": machine(),
    }
    text = section(argv, res)
    print(text)
    if args.update_docs:
        print(f"wrote {update_section(SECTION, text)}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
