"""Faust worker — end-to-end events/s on the local broker: Faust's own ceiling, one and two workers.

The credit-scoring scenario (``CreditScenario(n_events=--events)``) is published once to fresh
topics (``bench-faust-<token>.predictions`` / ``.ground_truth``, 4 partitions, keyed by
``event_id``). Then, ``--runs`` times and interleaved so that a change in machine load hits every
variant alike, each with a fresh consumer group (which re-reads the topics from the beginning):

* **aiokafka alone** — ``AIOKafkaConsumer.getmany`` in a loop, no Faust (``--aiokafka-child``).
* **Faust's per-message path** — a Faust app with the settings of driftline's worker (memory
  store, web disabled, raw ``acks=False`` topics) whose agent (``take_events(10000, within=0.5)``)
  only counts the messages; run in a subprocess (``--noop-child``).
* **driftline's delivery ceiling** — the same app on driftline's batch transport with a handler
  that only counts each fetch (``--batch-noop-child``).
* **one worker** — ``python -m driftline worker`` with a fresh embedded store and a status file.
* **two workers** — two of them in one group, each with its own store and status file.

Every variant runs in subprocesses and writes a JSON status after each batch (``updated`` time
and the next offset of each input partition). A run's rate is the messages consumed after the first status / the time
from the first status to the status at which every input partition is drained (its next offset
is the topic's end offset): group join, start-up and the first batch are left out, the store
writes and checkpoints of every later batch are in. With two workers a partition moved by a
rebalance is replayed from its checkpoint, so its offsets are taken from the newest status that
lists it. Subprocesses run in their own process groups and are always terminated.

    bash scripts/kafka.sh start
    python bench/faust_worker.py                  # 100,000 predictions, 3 runs; prints a markdown section
    python bench/faust_worker.py --update-docs    # also writes it into docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from _docs import calibrate, cpu_model, update_section

SECTION = "## Faust worker — end-to-end throughput"
ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 4
BATCH = 25_000
TARGET = 30_000
VARIANTS = ("aiokafka", "noop", "batch", "one", "two")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LOG_PATTERN = re.compile(r"error|exception|traceback|rebalanc|too late|timed? ?out|lag", re.I)


def _load() -> float:
    return os.getloadavg()[0]


# --------------------------------------------------------------------------- the no-op Faust app


def noop_child(brokers: str, group: str, prefix: str, partitions: int, status_file: str, batch: bool) -> None:
    """A Faust app with driftline's settings that only counts messages (a subprocess): an agent
    on Faust's per-message path, or with ``batch`` a handler on driftline's batch transport."""
    import faust

    from driftline.streams.batch_transport import SCHEME, route_batches
    from driftline.streams.faust_app import FETCH_BYTES

    app = faust.App(
        group,
        broker=[f"{SCHEME if batch else 'kafka'}://{b}" for b in brokers.split(",")],
        # Next to the status file, in the run's work directory, which the benchmark removes.
        datadir=str(Path(status_file).with_suffix(".faust")),
        store="memory://",
        web_enabled=False,
        topic_partitions=partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        **({"broker_max_poll_records": BATCH, "consumer_max_fetch_size": FETCH_BYTES} if batch else {}),
    )
    names = (prefix + "predictions", prefix + "ground_truth")
    inputs = app.topic(*names, acks=False, key_serializer="raw", value_serializer="raw")
    offsets: dict[str, dict[str, int]] = {}
    counted = [0]
    path = Path(status_file)
    staging = path.with_name(path.name + ".tmp")

    def note(records: list[Any]) -> None:
        counted[0] += len(records)
        for record in records:
            offsets.setdefault(str(record.partition), {})[record.topic] = record.offset + 1
        staging.write_bytes(orjson.dumps({"updated": time.time(), "offsets": offsets, "counts": {"messages": counted[0]}}))
        staging.replace(path)

    if batch:
        async def handle(records: dict[Any, list[Any]]) -> None:
            note([record for fetched in records.values() for record in fetched])

        app.topics.add(inputs)
        route_batches(app, names, handle)
    else:
        @app.agent(inputs, name="bench.noop")
        async def count(stream: Any) -> None:
            async for events in stream.take_events(BATCH, within=0.5):
                note([event.message for event in events])

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


def aiokafka_child(brokers: str, group: str, prefix: str, status_file: str) -> None:
    """aiokafka's consumer alone, no Faust: ``getmany`` batches of up to ``BATCH``, counted."""
    import asyncio

    from aiokafka import AIOKafkaConsumer

    path = Path(status_file)
    staging = path.with_name(path.name + ".tmp")

    async def consume() -> None:
        consumer = AIOKafkaConsumer(prefix + "predictions", prefix + "ground_truth", bootstrap_servers=brokers,
                                    group_id=group, auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            offsets: dict[str, dict[str, int]] = {}
            n = 0
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
                if not batches:
                    continue
                for tp, messages in batches.items():
                    n += len(messages)
                    offsets.setdefault(str(tp.partition), {})[tp.topic] = messages[-1].offset + 1
                staging.write_bytes(orjson.dumps({"updated": time.time(), "offsets": offsets, "counts": {"messages": n}}))
                staging.replace(path)
        finally:
            await consumer.stop()

    asyncio.run(consume())


# --------------------------------------------------------------------------- data and topics


def publish(brokers: str, prefix: str, directory: Path, n_events: int, seed: int) -> dict[str, Any]:
    """Write the scenario's event files and publish them once; return counts, spec path, times."""
    from kafka import KafkaProducer

    from driftline.scorers.scenario import CreditScenario
    from driftline.streams.topics import ensure_topics

    t0 = time.perf_counter()
    predictions, ground_truth, _, spec = CreditScenario(n_events=n_events, seed=seed).write_event_files(directory)
    generated = time.perf_counter() - t0
    ensure_topics(brokers.split(","), [prefix + "predictions", prefix + "ground_truth"], PARTITIONS)
    producer = KafkaProducer(
        bootstrap_servers=brokers.split(","), acks=1, linger_ms=20, batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    counts = {}
    size = 0
    t0 = time.perf_counter()
    try:
        for name, path in (("predictions", predictions), ("ground_truth", ground_truth)):
            n = 0
            with open(path, "rb") as fh:
                for line in fh:
                    value = line.rstrip(b"\n")
                    producer.send(prefix + name, key=orjson.loads(value)["event_id"].encode(), value=value)
                    size += len(value)
                    n += 1
            counts[name] = n
        producer.flush(timeout=600)
    finally:
        producer.close(timeout=30)
    return {"counts": counts, "spec": spec, "predictions": predictions, "ground_truth": ground_truth,
            "bytes": size / sum(counts.values()), "generate_s": generated, "publish_s": time.perf_counter() - t0}


def warm_compiled_kernels(info: dict[str, Any], work: Path, code: Path | None) -> float:
    """Replay the events once, untimed, with the driftline at ``code`` (default: this checkout).

    numba caches compiled kernels next to the sources: a checkout that never ran (a fresh
    baseline worktree) would otherwise compile them inside its first measured run (one baseline
    run took 180 CPU µs per message instead of about 60 that way)."""
    env = {**os.environ, "PYTHONPATH": str(code)} if code else {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-P", "-m", "driftline", "replay", "--spec", str(info["spec"]), "--predictions",
         str(info["predictions"]), "--ground-truth", str(info["ground_truth"]), "--data-dir",
         str(work / f"warm-{'baseline' if code else 'this'}")],
        env=env, check=True, capture_output=True,
    )
    return time.perf_counter() - t0


def end_offsets(brokers: str, topics: list[str]) -> dict[tuple[str, int], int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=brokers.split(","), enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        return {(tp.topic, tp.partition): offset for tp, offset in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def cleanup_broker(brokers: str, token: str) -> str:
    """Delete the topics and consumer groups whose names contain ``token`` (best effort)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=brokers.split(","), client_id="bench-faust-cleanup")
    try:
        topics = [t for t in admin.list_topics() if token in t]
        groups = [g["group_id"] for g in admin.list_groups() if token in g["group_id"]]
        try:
            if topics:
                admin.delete_topics(topics)
            if groups:
                admin.delete_groups(groups)
        except Exception as error:  # noqa: BLE001 - cleanup must not hide the results
            return f"cleanup incomplete: {error!r}"
        return f"deleted {len(topics)} topics and {len(groups)} consumer groups"
    finally:
        admin.close()


# --------------------------------------------------------------------------- running variants


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    status: Path
    log: Path
    peak_kb: int = 0

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (0 once it has exited)."""
        try:
            fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def sample_peak(self) -> None:
        try:
            for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))
        except OSError:
            pass


@dataclass
class Result:
    variant: str
    run: int
    rate: float = float("nan")
    seconds: float = float("nan")
    startup: float = float("nan")
    consumed_first: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    peak_mb: float = float("nan")
    cpu_us: float = float("nan")
    load: float = float("nan")
    loop_ns: float = float("nan")
    log_lines: list[str] = field(default_factory=list)
    error: str = ""


def start(command: list[str], status: Path, log: Path) -> Proc:
    fh = open(log, "wb")
    try:
        popen = subprocess.Popen(command, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        fh.close()
    return Proc(popen, status, log)


def stop(proc: Proc, timeout: float = 20.0) -> None:
    """SIGTERM the process group, SIGKILL it after ``timeout`` seconds."""
    if proc.popen.poll() is None:
        proc.sample_peak()
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.popen.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.popen.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.popen.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def progress(statuses: list[dict[str, Any]], ends: dict[tuple[str, int], int]) -> tuple[int, bool, float]:
    """Messages consumed (per partition from the newest status listing it), drained?, newest time."""
    newest: dict[str, tuple[float, dict[str, int]]] = {}
    for status in statuses:
        for partition, offsets in status.get("offsets", {}).items():
            if partition not in newest or status["updated"] > newest[partition][0]:
                newest[partition] = (status["updated"], offsets)
    consumed = 0
    drained = True
    for (topic, partition), end in ends.items():
        offset = newest.get(str(partition), (0.0, {}))[1].get(topic, 0)
        consumed += min(offset, end)
        drained &= offset >= end
    return consumed, drained, max((s["updated"] for s in statuses), default=0.0)


def measure(variant: str, run: int, commands: list[list[str]], work: Path, ends: dict[tuple[str, int], int],
            timeout: float, stall: float) -> Result:
    result = Result(variant, run, load=_load(), loop_ns=calibrate())
    total = sum(ends.values())
    procs: list[Proc] = []
    launched = time.time()
    try:
        for i, command in enumerate(commands):
            status = work / f"{variant}-{run}-{i}.status.json"
            procs.append(start([*command, str(status)], status, work / f"{variant}-{run}-{i}.log"))
        first: tuple[float, int] | None = None
        deadline = time.monotonic() + timeout
        last_change, last_consumed = time.monotonic(), -1
        while True:
            for proc in procs:
                proc.sample_peak()
            statuses = [s for s in (read_status(p.status) for p in procs) if s is not None]
            consumed, drained, updated = progress(statuses, ends)
            if first is None and consumed > 0:
                first = (min(s["updated"] for s in statuses), consumed)
                cpu_first = sum(p.cpu_seconds() for p in procs)
            if drained:
                cpu_end = sum(p.cpu_seconds() for p in procs)
                break
            dead = [p for p in procs if p.popen.poll() is not None]
            if dead:
                lines = ANSI.sub("", dead[0].log.read_text(errors="replace")).splitlines()
                reason = next((line.strip() for line in reversed(lines) if "Error" in line), "no error in its log")
                raise RuntimeError(f"a process exited with code {dead[0].popen.returncode}: {reason[:300]}")
            if consumed != last_consumed:
                last_change, last_consumed = time.monotonic(), consumed
            if time.monotonic() > deadline or (first is not None and time.monotonic() - last_change > stall):
                held = "; ".join(f"{p.status.name}: {sorted(s.get('offsets', {}))}" for p, s in zip(procs, map(read_status, [p.status for p in procs])) if s)
                raise RuntimeError(f"not drained: {consumed:,} of {total:,} consumed, no progress for "
                                   f"{time.monotonic() - last_change:.0f} s (partitions in the status files: {held})")
            time.sleep(0.05)
        assert first is not None
        result.startup = first[0] - launched
        result.consumed_first = first[1]
        result.seconds = updated - first[0]
        result.rate = (total - first[1]) / result.seconds
        result.cpu_us = (cpu_end - cpu_first) / (total - first[1]) * 1e6
        for status in statuses:
            for name, value in status.get("counts", {}).items():
                result.counts[name] = result.counts.get(name, 0) + value
    except RuntimeError as error:
        result.error = str(error)
    finally:
        for proc in procs:
            stop(proc)
    result.peak_mb = max((p.peak_kb for p in procs), default=0) / 1024 or float("nan")
    for proc in procs:
        lines = proc.log.read_text(errors="replace").splitlines() if proc.log.exists() else []
        result.log_lines += [ANSI.sub("", line) for line in lines if LOG_PATTERN.search(line)]
    return result


# --------------------------------------------------------------------------- report


def machine() -> str:
    cpu = cpu_model()
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in
                         ("faust-streaming", "aiokafka", "kafka-python", "chdb", "msgspec", "orjson"))
    return f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, {versions}"


def _median(results: list[Result], attr: str) -> float:
    values = [getattr(r, attr) for r in results if not r.error]
    return statistics.median(values) if values else float("nan")


def _range(results: list[Result]) -> str:
    rates = [r.rate for r in results if not r.error]
    return f"{min(rates):,.0f} – {max(rates):,.0f}" if rates else "—"


def _revision(root: Path) -> str:
    """The short commit of a checkout, or its path when it is no git checkout."""
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or str(root)


def section(argv: list[str], info: dict[str, Any], results: dict[str, list[Result]]) -> str:
    cmd = " ".join(["python bench/faust_worker.py", *(a for a in argv if a != "--update-docs")])
    if info.get("baseline"):
        cmd = f"git worktree add {argv[argv.index('--baseline') + 1]} {info['baseline']} && {cmd}"
    rate = {k: _median(v, "rate") for k, v in results.items()}
    met = "met" if rate["one"] >= TARGET else "**not met on this machine as measured**"
    loads = [r.load for v in results.values() for r in v]
    loops = [r.loop_ns for v in results.values() for r in v]
    failed = [r for v in results.values() for r in v if r.error]
    counts = next((r.counts for r in results["one"] if not r.error), {})
    peaks = [r.peak_mb for r in results["one"] if not r.error]
    names = {
        "aiokafka": "aiokafka consumer alone, no Faust (`getmany`, counts messages)",
        "noop": "Faust's per-message path: no-op agent (`take_events`, counts messages)",
        "batch": "**driftline's delivery ceiling**: no-op handler on the batch transport (counts messages)",
        "one": "**one driftline worker**",
        "two": "two driftline workers, one group",
        "baseline": f"one driftline worker at {info.get('baseline')} (the baseline, same run)",
    }
    rows = "\n".join(
        f"| {names[k]} | **{rate[k]:,.0f}** | {_range(v)} | {sum(not r.error for r in v)} | {_median(v, 'seconds'):.1f} | "
        f"{_median(v, 'startup'):.1f} | {_median(v, 'cpu_us'):.0f} |"
        if any(not r.error for r in v) else f"| {names[k]} | failed in all {len(v)} runs | | 0 | | | |"
        for k, v in results.items()
    )
    good_two = sum(not r.error for r in results["two"])
    if good_two:
        finished = "" if good_two == len(results["two"]) else f" (in the {good_two} of {len(results['two'])} runs that finished)"
        two = (f"Two workers in one group reach {rate['two'] / rate['one']:.2f}x one worker{finished} (the second "
               "worker's join costs a rebalance; 2 cores are shared by both workers, the broker and other work).")
    else:
        two = "Two workers in one group did not finish a run, so there is no two-worker figure from this run."
    baseline = ""
    if any(not r.error for r in results.get("baseline", [])):
        baseline = (f" This revision ({info['revision']}) against the baseline ({info['baseline']}) in the same run, "
                    f"runs interleaved: {rate['one']:,.0f} against {rate['baseline']:,.0f} events/s "
                    f"({rate['one'] / rate['baseline']:.2f}x; ranges {_range(results['one'])} and "
                    f"{_range(results['baseline'])}). Workers start with `python -P`: before c2d020d, `-m` put this "
                    "checkout first on `sys.path` and the baseline ran this revision's code, so comparisons recorded "
                    "before then compared a revision with itself.")
    failures = "".join(f"\n- {r.variant} run {r.run + 1} failed: {r.error}" for r in failed)
    if failures:
        failures = "\n\nRuns that failed (left out of the medians):" + failures
    warnings = sorted({line for v in results.values() for r in v for line in r.log_lines if "Crashed" in line})
    crashes = ""
    if warnings:
        crashes = (f"\n\nWorker logs: {len(warnings)} crash(es) logged by Faust during the runs, e.g. `"
                   + warnings[0].split("]: ", 1)[-1][:200].strip() + "`: Faust cancels and restarts its fetcher "
                   "on every rebalance (two workers joining one group) and logs that as a crash.")
    return f"""{SECTION}

Command: `bash scripts/kafka.sh start && {cmd}`

Workload: the credit-scoring scenario (`CreditScenario(n_events={info['n_events']:,}, seed={info['seed']})`,
14 features, about {info['bytes']:.0f} bytes of JSON per message) published once to two fresh
topics of the local single-node Kafka {info['kafka']} broker (127.0.0.1, {PARTITIONS} partitions,
keyed by `event_id`): {info['counts']['predictions']:,} predictions and {info['counts']['ground_truth']:,} ground truths
(labels arriving after the stream's end are not sent), **{info['total']:,} messages**. Each
variant then reads them all, {info['runs']} times, interleaved (aiokafka, per-message, batch, one, two, aiokafka, ...),
each time in its own subprocess(es) with a fresh consumer group:

- *aiokafka alone*: `AIOKafkaConsumer.getmany(max_records={BATCH:,})` in a loop, no Faust: what
  the broker and the Kafka client deliver to one Python process (the read takes about a second,
  so this figure is indicative only).
- *Faust's per-message path*: a Faust app with driftline's worker settings (memory store, web
  disabled, raw `acks=False` topics) whose agent takes `take_events({BATCH:,}, within=0.5)` and only
  counts the messages: the ceiling of any Faust agent.
- *driftline's delivery ceiling*: the same app on driftline's batch transport
  (`kafkabatch://`, `driftline/streams/batch_transport.py`, the worker's fetch settings) with a
  handler that only counts each fetch: the ceiling of the worker's input path.
- *one driftline worker*: `python -m driftline worker --spec ... --group <fresh> --topic-prefix ...
  --store <fresh embedded dir> --status-file ...` with the defaults (`--batch-size {BATCH:,}`,
  `--checkpoint-interval 10`): decode, validate, join, windows, partial windows to the merger,
  every raw event and joined row written to its embedded chDB store and every joined row
  produced to the labeled topic, checkpoints to the changelog.
- *two driftline workers*: two such processes in one group, each with its own store.

events/s = the messages consumed after the first status a process writes (after its first batch)
/ the time from that status to the one at which every input partition's next offset is the
topic's end offset. Offsets come from the status files, newest status first for each partition,
so a partition replayed from its checkpoint after a rebalance is counted once. Start-up
(interpreter, imports, group join, first batch) is left out of the rate; the table gives its median.
CPU µs per message = user + system CPU time of the measured process(es) over the same interval
(`/proc/<pid>/stat`), divided by the messages: less sensitive than the rate to other work on the
machine, since time spent waiting for a core is not counted.

| what | median events/s | range | runs | median seconds | start-up s | CPU µs per message |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
{rows}

One worker: {counts.get('predictions', 0):,} predictions and {counts.get('ground_truth', 0):,} ground truths accepted,
{counts.get('labeled', 0):,} joined, {counts.get('dead_letters', 0):,} dead letters; peak RSS (`VmHWM`)
{statistics.median(peaks) if peaks else float('nan'):,.0f} MB median over runs (max {max(peaks, default=float('nan')):,.0f} MB).
1-minute load average before each measurement: {min(loads):.2f} – {max(loads):.2f} (at the end
{info['load_end']:.2f}); the broker runs on the same cores.
Its speed before each measurement, as the time of one iteration of an empty Python loop:
{min(loops):.0f} – {max(loops):.0f} ns (median {statistics.median(loops):.0f}). Rates from different runs, and above all from
different machines, compare only as ratios to a baseline measured in the same run.{failures}{crashes}

Target: one worker >= {TARGET:,} events/s — {met}: {rate['one']:,.0f} events/s
({1e6 / rate['one']:.0f} µs per message). Delivery no longer bounds it. Faust's per-message path
caps an agent that does nothing at {rate['noop']:,.0f} events/s ({1e6 / rate['noop']:.0f} µs per message; each
message goes through `Service.wait_first`, which creates and cancels asyncio tasks, then the
conductor, a channel queue and the stream iterator; no Faust setting moves it, see
faust-streaming/faust#229). The worker therefore takes its input a fetch at a time through
driftline's batch transport, whose no-op ceiling in the same run is {rate['batch']:,.0f} events/s
({rate['batch'] / rate['noop']:.0f}x the per-message path). With the per-message agent the worker ran at
1,506 events/s on the machine of an earlier record, where the no-op agent ran at 3,204.{baseline} What remains is the worker's own work, per fetch and
partition: the pipeline (see [Embedded pipeline](#embedded-pipeline--throughput-and-memory) for its
rate on its own workload), the raw events and joined rows
written to chDB in blocks of `--store-batch-rows` (on the sink's writer thread), and one labeled message per joined row
produced to the broker as record batches (`driftline/streams/batch_producer.py`; a Faust
`Topic.send` cost about 100 µs per message on the earlier record's machine, aiokafka's `send` about 50 µs).
{two}

Machine: {info['machine']}.
"""



# --------------------------------------------------------------------------- main


def _terminate(signum: int, _: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", default=os.environ.get("DRIFTLINE_KAFKA", "127.0.0.1:9092"))
    parser.add_argument("--events", type=int, default=100_000, help="predictions in the scenario")
    parser.add_argument("--runs", type=int, default=3, help="runs of each variant (median reported)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=0.0, help="seconds one run may take (0: from --events)")
    parser.add_argument("--stall", type=float, default=60.0, help="give a run up after this many seconds without progress")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}")
    parser.add_argument("--keep", type=Path, help="keep the event files, logs and status files in this new directory")
    parser.add_argument("--update-docs", action="store_true", help="write the section into docs/benchmarks.md")
    parser.add_argument("--baseline", type=Path,
                        help="also run one worker from this checkout of another revision (e.g. a git worktree), "
                             "interleaved with the others")
    parser.add_argument("--noop-child", nargs=5, metavar=("BROKERS", "GROUP", "PREFIX", "PARTITIONS", "STATUS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--batch-noop-child", nargs=5, metavar=("BROKERS", "GROUP", "PREFIX", "PARTITIONS", "STATUS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--aiokafka-child", nargs=4, metavar=("BROKERS", "GROUP", "PREFIX", "STATUS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.aiokafka_child:
        brokers, group, prefix, status = args.aiokafka_child
        aiokafka_child(brokers, group, prefix, status)
        return
    if args.noop_child or args.batch_noop_child:
        brokers, group, prefix, partitions, status = args.noop_child or args.batch_noop_child
        noop_child(brokers, group, prefix, int(partitions), status, batch=bool(args.batch_noop_child))
        return
    if args.events < 1 or args.runs < 1:
        parser.error(f"--events and --runs must be >= 1, got {args.events} and {args.runs}")
    chosen = [v for v in args.variants.split(",") if v]
    if not chosen or not set(chosen) <= set(VARIANTS):
        parser.error(f"--variants must name some of {','.join(VARIANTS)}, got {args.variants!r}")
    if args.update_docs and set(chosen) != set(VARIANTS):
        parser.error("--update-docs needs every variant")
    signal.signal(signal.SIGTERM, _terminate)

    token = uuid.uuid4().hex[:10]
    prefix = f"bench-faust-{token}."
    timeout = args.timeout or 120 + args.events * 1.7 / 400
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    if args.keep:
        args.keep.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="bench-faust-") as tmp:
        work = args.keep or Path(tmp)
        try:
            log(f"load average at start: {os.getloadavg()}; topics {prefix}*")
            info = publish(args.broker, prefix, work / "data", args.events, args.seed)
            ends = end_offsets(args.broker, [prefix + "predictions", prefix + "ground_truth"])
            info.update(total=sum(ends.values()), n_events=args.events, seed=args.seed, runs=args.runs,
                        kafka=os.environ.get("DRIFTLINE_KAFKA_VERSION", "4.1.1"), machine=machine())
            if info["total"] != sum(info["counts"].values()):
                sys.exit(f"topics hold {info['total']:,} messages, published {sum(info['counts'].values()):,}")
            log(f"generated in {info['generate_s']:.1f} s; published {info['counts']} ({info['total']:,} messages, "
                f"{info['bytes']:.0f} bytes each) in {info['publish_s']:.1f} s")

            def worker(group: str, store: str, code: Path | None = None) -> list[str]:
                # PYTHONPATH comes before the editable install on sys.path: the baseline's package wins.
                # -P: without it, `-m` puts the working directory (this checkout) first.
                env = ["env", f"PYTHONPATH={code}"] if code else []
                return [*env, sys.executable, "-P", "-m", "driftline", "worker", "--spec", str(info["spec"]), "--broker", args.broker,
                        "--group", group, "--topic-prefix", prefix, "--partitions", str(PARTITIONS),
                        "--store", str(work / store), "--status-file"]

            if args.baseline:
                chosen.append("baseline")
                info["baseline"] = _revision(args.baseline)
            for code in (None, args.baseline) if args.baseline else (None,):
                log(f"compiled kernels of {code or 'this checkout'} warmed by a replay in "
                    f"{warm_compiled_kernels(info, work, code):.1f} s (untimed)")
            info["revision"] = _revision(Path(__file__).resolve().parent.parent)
            results: dict[str, list[Result]] = {v: [] for v in (*VARIANTS, "baseline") if v in chosen}
            for run in range(args.runs):
                variants = {
                    "aiokafka": [[sys.executable, __file__, "--aiokafka-child", args.broker, f"bench-{token}-aiokafka-{run}",
                                  prefix]],
                    "noop": [[sys.executable, __file__, "--noop-child", args.broker, f"bench-{token}-noop-{run}", prefix,
                              str(PARTITIONS)]],
                    "batch": [[sys.executable, __file__, "--batch-noop-child", args.broker, f"bench-{token}-batch-{run}",
                               prefix, str(PARTITIONS)]],
                    "one": [worker(f"bench-{token}-one-{run}", f"store-one-{run}")],
                    "two": [worker(f"bench-{token}-two-{run}", f"store-two-{run}-{i}") for i in range(2)],
                    "baseline": [worker(f"bench-{token}-baseline-{run}", f"store-baseline-{run}", args.baseline)],
                }
                for variant, commands in variants.items():
                    if variant not in chosen:
                        continue
                    res = measure(variant, run, commands, work, ends, timeout, args.stall)
                    results[variant].append(res)
                    detail = res.error or (f"{res.rate:,.0f} events/s over {res.seconds:.1f} s, {res.cpu_us:.0f} CPU µs/message "
                                           f"(start-up {res.startup:.1f} s, first status {res.consumed_first:,} messages)")
                    log(f"run {run + 1} {variant}: {detail}; load before {res.load:.2f}; empty loop {res.loop_ns:.0f} ns; "
                        f"peak RSS {res.peak_mb:.0f} MB; "
                        f"counts {res.counts}")
                    for line in res.log_lines[:8]:
                        log(f"    log: {line[:240]}")
                    if len(res.log_lines) > 8:
                        log(f"    log: ... {len(res.log_lines) - 8} more matching lines")
            info["load_end"] = _load()
            dump = {"info": {k: str(v) if isinstance(v, Path) else v for k, v in info.items()},
                    "results": {k: [vars(r) for r in v] for k, v in results.items()}}
            log("results: " + json.dumps(dump))
        finally:
            try:
                log(cleanup_broker(args.broker, token))
            except Exception as error:  # noqa: BLE001 - report and keep the results
                log(f"cleanup failed: {error!r}")
    for variant, runs in results.items():
        log(f"{variant}: median {_median(runs, 'rate'):,.0f} events/s over {sum(not r.error for r in runs)} good runs")
    if not set(VARIANTS) <= set(results):
        return
    if any(not any(not r.error for r in results[v]) for v in ("noop", "batch", "one", "aiokafka")):
        sys.exit("the one-worker, a ceiling or the aiokafka variant failed in every run; no section written")
    text = section(argv, info, results)
    print(text)
    if args.update_docs:
        log(f"wrote {update_section(SECTION, text)}")


if __name__ == "__main__":
    main(sys.argv[1:])
