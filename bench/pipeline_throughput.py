"""Embedded pipeline throughput and memory: decode, validate, join and accumulate on one core.

A W1-like binary model (25 features: 20 numeric, 5 categorical with 10 levels; reference
10,000 rows; window ``1d``; segmented by one categorical feature). Predictions and ground
truth (labels for about 70 % of the predictions, arriving shortly after them, interleaved in
the stream; numeric features and scores with 6 decimals, or ``--digits``, where 0 leaves them
unrounded as a Python producer sends them) are encoded with orjson before the clock starts, cut into batches of 20,000
messages and fed to ``Pipeline.process``; the timed span is every ``process`` call plus
``finish()``, after one untimed warm-up batch that loads the compiled kernels. The process pins itself to CPU 0 (``os.sched_setaffinity(0, {0})``).

Memory runs happen in fresh subprocesses that generate the events lazily, one batch at a time,
and report their own peak RSS (``VmHWM``; ``ru_maxrss`` is printed too, but in a subprocess it
includes the parent's peak) at 250k, 500k and 1M predictions in one window.

Run: ``python bench/pipeline_throughput.py [--predictions N] [--runs R] [--skip-memory] [--baseline DIR] [--digits D]``;
``--baseline`` (a checkout of another revision, e.g. from ``git worktree add``) adds runs of that
revision's driftline interleaved with this one's, each in a fresh process with the same harness.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import numpy as np
import orjson
import pandas as pd

from driftline.config import parse_duration, ModelSpec, parse_spec
from driftline.reference import ModelReference, load_reference
from driftline.streams.pipeline import GROUND_TRUTH, PREDICTION, Message, Pipeline

from _docs import calibrate, cpu_model

SEED = 20240601
MODEL = "w1"
N_NUM, N_CAT, LEVELS = 20, 5, 10
N_REF = 10_000
BATCH = 20_000
CHUNK = 1_000
LABEL_SHARE = 0.7
DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the start of the first window.
NOW_MS = T0 + 40 * DAY_MS
NUMERIC = [f"num_{i:02d}" for i in range(N_NUM)]
CATEGORICAL = [f"cat_{i}" for i in range(N_CAT)]
LEVEL_NAMES = np.array([f"level_{j}" for j in range(LEVELS)], dtype=object)
CHECKPOINTS = (250_000, 500_000, 1_000_000)
# Decimals of the numeric features and the score in the events (``--digits``); 0 leaves them as
# Python writes a float, the shortest repr (16-17 significant digits), as a producer sends
# values it did not round.
DIGITS = 6


def make_spec(label_ttl: str = "30d") -> ModelSpec:
    # A TTL shorter than a day needs shorter windows (the spec requires label_ttl >= window +
    # allowed_lateness): the short-TTL memory run uses 30-minute windows.
    short = parse_duration(label_ttl, "label_ttl") < parse_duration("1d", "window") + parse_duration("5m", "lateness")
    return parse_spec({
        "model": MODEL,
        "task": "binary",
        "features": [{"name": n, "kind": "numeric"} for n in NUMERIC]
        + [{"name": n, "kind": "categorical"} for n in CATEGORICAL],
        "reference": {"path": "reference.parquet"},
        "window": "30m" if short else "1d",
        "allowed_lateness": "5m",
        "label_ttl": label_ttl,
        "segments": [CATEGORICAL[0]],
    })


def _weights() -> np.ndarray:
    return np.random.default_rng(SEED).normal(0.0, 0.3, N_NUM)


def _rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    numeric = rng.normal(0.0, 1.0, (n, N_NUM))
    if DIGITS:
        numeric = np.round(numeric, DIGITS)
    codes = rng.integers(0, LEVELS, (n, N_CAT))
    score = 1.0 / (1.0 + np.exp(-(numeric @ _weights())))
    if DIGITS:
        score = np.round(score, DIGITS)
    prediction = (score >= 0.5).astype(int)
    label = (rng.random(n) < score).astype(int)
    return numeric, codes, score, prediction, label


def make_reference(spec: ModelSpec) -> ModelReference:
    numeric, codes, score, prediction, label = _rows(np.random.default_rng(SEED + 1), N_REF)
    frame = pd.DataFrame(numeric, columns=NUMERIC)
    for j, name in enumerate(CATEGORICAL):
        frame[name] = LEVEL_NAMES[codes[:, j]]
    frame["prediction"], frame["score"], frame["label"] = prediction, score, label
    return load_reference(spec, frame=frame)


def _event_id(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{SEED:012x}"


def stream(n_predictions: int, span_ms: int, seed: int = SEED) -> Iterator[list[Message]]:
    """Batches of encoded messages, generated lazily.

    Predictions come in chunks of 1,000 evenly spread over ``span_ms``; after each chunk come
    the labels (70 %) of the chunk before it, 1 s to 5 min after their prediction.
    """
    rng = np.random.default_rng(seed)
    pending: list[Message] = []
    previous: list[Message] = []
    done = 0
    while done < n_predictions or previous:
        k = min(CHUNK, n_predictions - done)
        current: list[Message] = []
        labels: list[Message] = []
        if k:
            numeric, codes, score, prediction, label = _rows(rng, k)
            ts = T0 + (np.arange(done, done + k, dtype=np.int64) * span_ms) // n_predictions
            delay = rng.integers(1_000, 300_000, k)
            labeled = rng.random(k) < LABEL_SHARE
            for i, (num, cat, s, p, y, t, d, has) in enumerate(zip(
                numeric.tolist(), codes.tolist(), score.tolist(), prediction.tolist(), label.tolist(),
                ts.tolist(), delay.tolist(), labeled.tolist(),
            )):
                event_id = _event_id(done + i)
                features: dict[str, Any] = dict(zip(NUMERIC, num))
                features.update(zip(CATEGORICAL, LEVEL_NAMES[cat].tolist()))
                # Copied to exact-size bytes: each orjson.dumps result pins about 4 KB of RSS.
                data = bytes(memoryview(orjson.dumps({
                    "event_id": event_id, "model": MODEL, "version": "v1", "ts": t,
                    "features": features, "prediction": p, "score": s,
                })))
                current.append(Message(PREDICTION, data, "predictions", str(done + i)))
                if has:
                    truth = bytes(memoryview(orjson.dumps({"event_id": event_id, "model": MODEL, "ts": t + d, "label": y})))
                    labels.append(Message(GROUND_TRUTH, truth, "ground_truth", str(done + i)))
            done += k
        pending.extend(current)
        pending.extend(previous)
        previous = labels
        while len(pending) >= BATCH:
            yield pending[:BATCH]
            pending = pending[BATCH:]
    if pending:
        yield pending


def pipeline(reference: ModelReference) -> Pipeline:
    return Pipeline({MODEL: reference}, now_ms=lambda: NOW_MS)


def run_once(reference: ModelReference, batches: list[list[Message]]) -> tuple[float, dict[str, int]]:
    pipe = pipeline(reference)
    process = pipe.process
    start = time.perf_counter()
    for batch in batches:
        process(batch)
    pipe.finish()
    return time.perf_counter() - start, dict(pipe.counts)


def stage_times(reference: ModelReference, batches: list[list[Message]]) -> dict[str, float]:
    """Seconds per stage, driving the pipeline's parts in the order ``Pipeline.process`` does."""
    pipe = pipeline(reference)
    names = ["decode + validate", "lateness + join", "drift accumulate", "performance accumulate", "close / emit / expire"]
    times = dict.fromkeys(names, 0.0)
    clock = time.perf_counter
    for batch in batches:
        t0 = clock()
        columns, _ = pipe.predictions.decode([m.data for m in batch if m.kind == PREDICTION])
        truths, _, _ = pipe.decoder.decode_ground_truths([m.data for m in batch if m.kind != PREDICTION])
        t1 = clock()
        accepted = columns[MODEL]
        late = pipe.drift.late(MODEL, accepted.ts)
        if late.any():
            accepted = accepted.take(~late)
        joined, _ = pipe.joiner.add_predictions(accepted)
        labeled, _ = pipe.joiner.add_ground_truth(truths)
        t2 = clock()
        pipe.drift.add(accepted)
        t3 = clock()
        pipe.performance.add_predictions(accepted)
        pipe.performance.add_labeled(joined + labeled)
        t4 = clock()
        pipe.drift.close(False)
        pipe.performance.emit(False)
        pipe.joiner.expire()
        t5 = clock()
        for name, (a, b) in zip(names, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)]):
            times[name] += b - a
    t5 = clock()
    pipe.drift.close(True)
    pipe.performance.emit(True)
    pipe.joiner.pending_labels()
    times["close / emit / expire"] += clock() - t5
    return times


def profile(reference: ModelReference, batches: list[list[Message]], top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    run_once(reference, batches)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    """This process's peak RSS (``VmHWM``).

    ``ru_maxrss`` of a child started by ``subprocess`` also covers its parent's peak (the kernel
    carries the pre-exec address space's high-water mark over), so it is reported alongside only.
    """
    return _status_mb("VmHWM")


def _ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    """Restart the peak RSS from the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def join_state_mb(tables: dict[str, Any]) -> float:
    """The join tables' columns, index and id bytes (payload objects are shared, interned values)."""
    return sum(t.nbytes() for t in tables.values()) / 2**20


def memory_child(n_predictions: int, label_ttl: str, feed: bool) -> dict[str, Any]:
    reference = make_reference(make_spec(label_ttl))
    pipe = pipeline(reference)
    settle()
    base_rss, base_peak, base_ru = _rss_mb(), _peak_mb(), _ru_maxrss_mb()
    reset = _reset_peak()
    checkpoints = []
    targets = list(CHECKPOINTS)
    seen = 0
    for batch in stream(n_predictions, DAY_MS - 1):
        seen += sum(1 for m in batch if m.kind == PREDICTION)
        if feed:
            pipe.process(batch)
        if targets and seen >= targets[0]:
            targets.pop(0)
            tables = pipe.joiner.tables
            counts = [t.counts() for t in tables.values()]
            markers = sum(c["joined"] for c in counts)
            pending = sum(c["pending_predictions"] + c["pending_labels"] for c in counts)
            peak = _peak_mb()
            checkpoints.append({
                "predictions": seen, "messages": pipe.counts["predictions"] + pipe.counts["ground_truth"],
                "peak_mb": peak, "peak_minus_baseline_mb": peak - base_rss, "rss_mb": _rss_mb(), "ru_maxrss_mb": _ru_maxrss_mb(),
                "join_entries": markers + pending, "join_markers": markers, "join_pending": pending,
                "join_state_mb": join_state_mb(tables),
            })
    if feed:
        pipe.finish()
    return {
        "label_ttl": label_ttl, "feed": feed, "baseline_rss_mb": base_rss, "baseline_peak_mb": base_peak,
        "baseline_ru_maxrss_mb": base_ru, "peak_reset": reset, "final_peak_mb": _peak_mb(), "final_ru_maxrss_mb": _ru_maxrss_mb(), "checkpoints": checkpoints, "counts": pipe.counts,
    }


def run_memory(n_predictions: int, label_ttl: str, feed: bool) -> dict[str, Any]:
    command = [sys.executable, os.path.abspath(__file__), "--memory-child", str(n_predictions), "--label-ttl", label_ttl,
               "--digits", str(DIGITS)]
    if not feed:
        command.append("--generate-only")
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def decode_floor(reference: ModelReference, batches: list[list[Message]]) -> float:
    """Microseconds per message of the bare msgspec decode (no checks, no pipeline): what
    decoding cost before the compiled scanner took the predictions."""
    pipe = pipeline(reference)
    predictions, truths = pipe.decoder._predictions.decode, pipe.decoder._truths.decode
    start = time.perf_counter()
    for batch in batches:
        for message in batch:
            (predictions if message.kind == PREDICTION else truths)(message.data)
    return (time.perf_counter() - start) / sum(map(len, batches)) * 1e6


def _revision() -> str:
    """The commit of the driftline checkout this process imported (a ``--baseline`` child's too)."""
    import driftline

    root = os.path.dirname(os.path.dirname(os.path.abspath(driftline.__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "driftline"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return head.stdout.strip() + (" (driftline/ modified)" if dirty.stdout.strip() else "")


def settle(cpython_gc: bool = False) -> str:
    """Give the timed runs the heap settings the runtime runs with: ``driftline replay`` and
    ``demo`` call ``settle_heap`` once set up (revisions before it ran with CPython's)."""
    try:
        from driftline.streams.gc_policy import settle_heap
    except ImportError:
        return "CPython's (this revision has no settle_heap)"
    if cpython_gc:
        return "CPython's (--cpython-gc)"
    settle_heap()
    return "settle_heap (start-up objects frozen, young threshold raised)"


def timed_child(n_predictions: int, days: int, cpython_gc: bool) -> dict[str, Any]:
    """One timed run in a fresh process, on whichever driftline ``PYTHONPATH`` selects."""
    reference = make_reference(make_spec())
    batches = list(stream(n_predictions, days * DAY_MS))
    run_once(reference, [batches[0][:1_000]])
    settle(cpython_gc)
    elapsed, counts = run_once(reference, batches)
    return {"revision": _revision(), "seconds": elapsed, "events": counts["predictions"] + counts["ground_truth"]}


def side_by_side(baseline: str, runs: int, n_predictions: int, days: int) -> None:
    """Interleaved fresh-process runs of this checkout and of ``baseline``'s driftline package.

    Both run this script's harness; only the imported ``driftline`` differs (``PYTHONPATH``
    comes before the editable install on ``sys.path``).
    """
    variants = {"this": [], "this, --cpython-gc": ["--cpython-gc"], "baseline": []}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    revisions = {}
    for run in range(runs):
        for name, extra in variants.items():
            env = dict(os.environ)
            if name == "baseline":
                env["PYTHONPATH"] = os.path.abspath(baseline)
            else:
                env.pop("PYTHONPATH", None)
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--timed-child", "--predictions", str(n_predictions),
                 "--days", str(days), "--digits", str(DIGITS), *extra],
                env=env, capture_output=True, text=True, check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            revisions[name] = result["revision"]
            rates[name].append(result["events"] / result["seconds"])
            print(f"side by side run {run + 1}, {name} ({result['revision']}): {rates[name][-1]:,.0f} events/s; load {os.getloadavg()[0]:.2f}")
    base = statistics.median(rates["baseline"])
    for name, got in rates.items():
        median = statistics.median(got)
        print(f"side by side median, {name} ({revisions[name]}): {median:,.0f} events/s ({min(got):,.0f}-{max(got):,.0f}); "
              f"ratio to baseline {median / base:.2f}x")


def main() -> None:
    global DIGITS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=235_000, help="predictions in the throughput run")
    parser.add_argument("--days", type=int, default=2, help="windows (days) the throughput run spans")
    parser.add_argument("--runs", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--top", type=int, default=15, help="profile lines to print")
    parser.add_argument("--memory-predictions", type=int, default=1_000_000)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--label-ttl", default="30d", help=argparse.SUPPRESS)
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--timed-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cpython-gc", action="store_true",
                        help="time with CPython's garbage-collector settings instead of the runtime's settle_heap")
    parser.add_argument("--baseline", help="a checkout of another revision: also time its driftline, runs interleaved")
    parser.add_argument("--digits", type=int, default=DIGITS,
                        help="decimals of the numeric features and score (0: unrounded, 16-17 significant digits)")
    args = parser.parse_args()
    if args.digits < 0:
        parser.error(f"--digits must be >= 0, got {args.digits}")
    DIGITS = args.digits
    os.sched_setaffinity(0, {0})
    if args.memory_child is not None:
        print(json.dumps(memory_child(args.memory_child, args.label_ttl, not args.generate_only)))
        return
    if args.timed_child:
        print(json.dumps(timed_child(args.predictions, args.days, args.cpython_gc)))
        return

    print(f"CPU: {cpu_model()}; nproc {os.cpu_count()}; pinned to CPU {sorted(os.sched_getaffinity(0))}")
    print(f"Python {platform.python_version()}, numpy {np.__version__}, msgspec {msgspec.__version__}, orjson {orjson.__version__}")
    print(f"load average at start: {os.getloadavg()}")
    print(f"driftline at {_revision()}")
    reference = make_reference(make_spec())
    print(f"calibration: empty Python loop {calibrate():.0f} ns per iteration")
    start = time.perf_counter()
    batches = list(stream(args.predictions, args.days * DAY_MS))
    messages = sum(len(b) for b in batches)
    size = sum(len(m.data) for b in batches for m in b)
    print(f"numeric features and score: {f'{DIGITS} decimals' if DIGITS else 'unrounded (shortest repr)'}")
    print(f"encoded {messages:,} messages ({size / messages:.0f} bytes on average) in {len(batches)} batches "
          f"in {time.perf_counter() - start:.1f} s (not timed)")

    # Untimed: loads (or, on a fresh checkout, compiles) the numba kernels, as a worker's first batch does.
    run_once(reference, [batches[0][:1_000]])
    print(f"garbage collector: {settle(args.cpython_gc)}")
    seconds = []
    for run in range(args.runs):
        elapsed, counts = run_once(reference, batches)
        events = counts["predictions"] + counts["ground_truth"]
        seconds.append(elapsed)
        print(f"run {run + 1}: {elapsed:.3f} s, {events / elapsed:,.0f} events/s "
              f"(predictions {counts['predictions']:,}, labels {counts['ground_truth']:,}, "
              f"joined {counts['labeled']:,}, dead letters {counts['dead_letters']:,}); load {os.getloadavg()[0]:.2f}")
        if events != messages or counts["dead_letters"]:
            raise SystemExit(f"expected {messages} accepted events and no dead letters, got {counts}")
    median = statistics.median(seconds)
    print(f"median: {median:.3f} s, {messages / median:,.0f} events/s; best {messages / min(seconds):,.0f} events/s; "
          f"per event {median / messages * 1e6:.2f} µs")

    print(f"floor: bare msgspec decode {decode_floor(reference, batches):.2f} µs per message; "
          f"empty loop now {calibrate():.0f} ns per iteration")
    stages = stage_times(reference, batches)
    total = sum(stages.values())
    print("stages (one pass, µs per event and share):")
    for name, value in stages.items():
        print(f"  {name:<24} {value:7.3f} s  {value / messages * 1e6:6.2f} µs  {value / total:6.1%}")
    print(f"  {'sum':<24} {total:7.3f} s  {total / messages * 1e6:6.2f} µs")

    if not args.skip_profile:
        print(profile(reference, batches, args.top))
    del batches

    if args.baseline:
        side_by_side(args.baseline, args.runs, args.predictions, args.days)

    if not args.skip_memory:
        print(f"memory runs: {args.memory_predictions:,} predictions in one window, lazily generated")
        for label_ttl, feed in (("30d", True), ("1h", True), ("30d", False)):
            result = run_memory(args.memory_predictions, label_ttl, feed)
            what = f"label_ttl {label_ttl}" if feed else "generator only (no pipeline)"
            print(f"  {what}: baseline RSS {result['baseline_rss_mb']:.0f} MB (peak so far {result['baseline_peak_mb']:.0f} MB, "
                  f"ru_maxrss {result['baseline_ru_maxrss_mb']:.0f} MB; peak reset: {result['peak_reset']}), "
                  f"final peak {result['final_peak_mb']:.0f} MB (ru_maxrss {result['final_ru_maxrss_mb']:.0f} MB), counts {result['counts']}")
            for c in result["checkpoints"]:
                print(f"    {c['predictions']:>9,} predictions: peak {c['peak_mb']:.0f} MB "
                      f"(+{c['peak_minus_baseline_mb']:.0f} MB), RSS {c['rss_mb']:.0f} MB, join entries {c['join_entries']:,} "
                      f"({c['join_markers']:,} markers, {c['join_pending']:,} pending) = {c['join_state_mb']:.0f} MB")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
