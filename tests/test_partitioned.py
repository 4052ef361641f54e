"""A stream split over partitions, merged, gives the single pipeline's results.

Pure logic (no broker): the scenario's messages are spread over four partitions by ``event_id``
as Kafka's producer would, each partition runs its own :class:`PartitionRunner`, their partials
are routed to the runner owning the model's partials partition, and the stored rows are compared
with one :class:`Pipeline` over the whole stream. Also checked: a runner restored from a snapshot
and fed the messages after it ends where the uninterrupted runner ends, and replayed partials do
not change anything.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np
import orjson
import pytest

from driftline.config import load_spec
from driftline.reference import load_reference
from driftline.scorers.scenario import CreditScenario
from driftline.streams.partitioned import Partials, PartitionRunner, StateMismatch, partition_for
from driftline.streams.pipeline import Message, Pipeline
from driftline.streams.sources import merged

PARTITIONS = 4
N_EVENTS = 25_000
METRIC_KEY = ("model", "version", "segment", "window_start", "metric")
DRIFT_KEY = ("model", "version", "window_start", "target", "feature", "test")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[Message]]:
    directory = tmp_path_factory.mktemp("partitioned")
    predictions, ground_truth, _, spec_path = CreditScenario(n_events=N_EVENTS, seed=11).write_event_files(directory)
    spec = load_spec(spec_path)
    references = {spec.model: load_reference(spec)}
    return references, list(merged(predictions, ground_truth))


def partition_of(message: Message) -> int:
    event_id = orjson.loads(message.data)["event_id"]
    return zlib.crc32(event_id.encode()) % PARTITIONS


def latest(rows: list[dict], key: tuple[str, ...]) -> dict[tuple, dict]:
    """The row per key with the highest revision (what ReplacingMergeTree keeps)."""
    kept: dict[tuple, dict] = {}
    for row in rows:
        k = tuple(row[name] for name in key)
        if k not in kept or row["revision"] >= kept[k]["revision"]:
            kept[k] = row
    return kept


def assert_rows_equal(left: dict[tuple, dict], right: dict[tuple, dict]) -> None:
    assert left.keys() == right.keys()
    for k in left:
        for name, value in left[k].items():
            other = right[k][name]
            if isinstance(value, float) and isinstance(other, float):
                assert value == pytest.approx(other, rel=1e-9, abs=1e-12, nan_ok=True), (k, name)
            else:
                assert value == other, (k, name)


def final_alerts(alerts: list) -> dict[str, tuple]:
    """The latest state of every alert: what the compacted topic and the alerts table keep.

    Its revision (the number of states so far) is left out: metric rows are written again as
    labels arrive, and each new value of an open alert is an update, so a stream cut into more
    batches passes through more states on its way to the same final one.
    """
    latest_states: dict[str, Any] = {}
    for alert in alerts:
        if alert.alert_id not in latest_states or alert.revision >= latest_states[alert.alert_id].revision:
            latest_states[alert.alert_id] = alert
    return {
        key: (a.status, a.window_start, a.rule, a.feature, a.segment, round(a.value, 9), a.n)
        for key, a in latest_states.items()
    }


def run_partitioned(
    references: dict, messages: list[Message], batch: int, cut: int | None = None, together: bool = False
) -> tuple[list, list, list]:
    """Each partition's runner takes its messages ``batch`` at a time; its partials go to their
    owner at once (each twice: a replay), or with ``together`` all of a round's partials in one
    call per owner, as a worker's fetch of the partials topic brings them."""
    runners = {p: PartitionRunner(p, references, PARTITIONS, now_ms=lambda: 2**62) for p in range(PARTITIONS)}
    queues: dict[int, list[Message]] = {p: [] for p in range(PARTITIONS)}
    for message in messages:
        queues[partition_of(message)].append(message)
    metrics: list[dict] = []
    drift: list[dict] = []
    alerts: list = []
    for start in range(0, max(len(q) for q in queues.values()), batch):
        held: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
        for p in range(PARTITIONS):
            chunk = queues[p][start:start + batch]
            if not chunk:
                continue
            if cut is not None and start == cut:
                runners[p] = PartitionRunner.restore(runners[p].snapshot(), references, PARTITIONS, now_ms=lambda: 2**62)
            _, partials = runners[p].process_sources(chunk)
            for item in partials:
                payload = item.to_bytes()
                owner = partition_for(item.model, PARTITIONS)
                if together:
                    held[owner].append(payload)
                    continue
                out = runners[owner].process_partials([payload, payload])
                metrics.extend(out.window_metrics)
                drift.extend(out.drift_results)
                alerts.extend(out.alerts)
        for owner, payloads in held.items():
            if payloads:
                out = runners[owner].process_partials(payloads)
                metrics.extend(out.window_metrics)
                drift.extend(out.drift_results)
                alerts.extend(out.alerts)
    return metrics, drift, alerts


def test_partitioned_equals_single_pipeline(scenario: tuple[dict, list[Message]]) -> None:
    references, messages = scenario
    single = Pipeline(references, now_ms=lambda: 2**62)
    out = single.process(messages)
    metrics, drift, alerts = run_partitioned(references, messages, batch=700)
    merged_metrics, merged_drift = latest(metrics, METRIC_KEY), latest(drift, DRIFT_KEY)
    # The partitioned stream has no end-of-stream flush: only windows every partition has
    # passed are final. The single pipeline closed the same windows without finishing.
    want_metrics, want_drift = latest(out.window_metrics, METRIC_KEY), latest(out.drift_results, DRIFT_KEY)
    assert len({k[2] for k in merged_drift}) >= 3 and len(merged_metrics) > 50
    assert {k[2] for k in merged_drift} == {k[2] for k in want_drift}
    assert_rows_equal(merged_metrics, want_metrics)
    assert_rows_equal(merged_drift, want_drift)
    assert final_alerts(alerts) == final_alerts(out.alerts)
    assert final_alerts(alerts), "the scenario's drift raised no alert"


def test_partials_taken_together_give_what_they_give_one_by_one(scenario: tuple[dict, list[Message]]) -> None:
    references, messages = scenario
    one_by_one = run_partitioned(references, messages, batch=700)
    together = run_partitioned(references, messages, batch=700, together=True)
    assert len(together[0]) < len(one_by_one[0]), "settling once per call should write fewer revisions"
    assert_rows_equal(latest(together[0], METRIC_KEY), latest(one_by_one[0], METRIC_KEY))
    assert_rows_equal(latest(together[1], DRIFT_KEY), latest(one_by_one[1], DRIFT_KEY))
    assert final_alerts(together[2]) == final_alerts(one_by_one[2])


def test_restored_runner_continues_exactly(scenario: tuple[dict, list[Message]]) -> None:
    references, messages = scenario
    plain = run_partitioned(references, messages, batch=500)
    restored = run_partitioned(references, messages, batch=500, cut=1500)
    assert_rows_equal(latest(restored[0], METRIC_KEY), latest(plain[0], METRIC_KEY))
    assert_rows_equal(latest(restored[1], DRIFT_KEY), latest(plain[1], DRIFT_KEY))
    # A restart mid-stream raises no alert twice: the same ids, states and revisions.
    assert [(a.alert_id, a.status, a.revision) for a in restored[2]] == [(a.alert_id, a.status, a.revision) for a in plain[2]]


def test_seen_skips_consumed_offsets(scenario: tuple[dict, list[Message]]) -> None:
    references, _ = scenario
    runner = PartitionRunner(0, references, PARTITIONS)
    assert [runner.seen("t", o) for o in (0, 1, 1, 0, 2)] == [False, False, True, True, False]
    restored = PartitionRunner.restore(runner.snapshot(), references, PARTITIONS)
    assert restored.seen("t", 2) and not restored.seen("t", 3) and not restored.seen("other", 0)
    with pytest.raises(ValueError, match="different partition count"):
        PartitionRunner.restore(runner.snapshot(), references, PARTITIONS + 1)


def test_unseen_agrees_with_seen(scenario: tuple[dict, list[Message]]) -> None:
    references, _ = scenario
    rng = np.random.default_rng(5)
    for _ in range(200):
        one, other = PartitionRunner(0, references, PARTITIONS), PartitionRunner(0, references, PARTITIONS)
        consumed, expected = int(rng.integers(0, 8)), int(rng.integers(-1, 10))
        for runner in (one, other):
            runner.offsets["t"] = consumed
            if expected >= 0:
                runner.expect("t", expected)
        start = int(rng.integers(0, 10))
        offsets = np.cumsum(rng.integers(1, 3, size=int(rng.integers(1, 6)))).tolist()
        offsets = [start + o for o in offsets]
        kept = [o for o in offsets if not one.seen("t", o)]
        first = other.unseen("t", offsets)
        assert offsets[first:] == kept
        assert other.offsets == one.offsets and other._expected == one._expected


def test_partials_reject_foreign_payloads() -> None:
    import pickle

    with pytest.raises(ValueError, match="not a Partials message"):
        Partials.from_bytes(pickle.dumps({"x": 1}))
    assert math.isfinite(partition_for("m", 3))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str, bytes]:
    """A scenario's spec directory, its spec text, and a checkpoint holding state of its model."""
    directory = tmp_path_factory.mktemp("signatures")
    predictions, ground_truth, _, spec_path = CreditScenario(n_events=3_000, seed=3).write_event_files(directory)
    text = spec_path.read_text()
    spec = load_spec(spec_path)
    runner = PartitionRunner(0, {spec.model: load_reference(spec)}, 1)
    runner.process_sources(list(merged(predictions, ground_truth))[:2_000])
    return directory, text, runner.snapshot()


def references_from(directory: Any, *texts: str) -> dict:
    references = {}
    for i, text in enumerate(texts):
        path = directory / f"changed-{i}.yaml"
        path.write_text(text)
        spec = load_spec(path)
        references[spec.model] = load_reference(spec)
    return references


@pytest.mark.parametrize(("old", "new", "named"), [
    ("window: 1d", "window: 12h", "window"),
    ("- name: has_mortgage\n  kind: categorical\n", "", "features"),
    ("- name: n_delinquencies\n  kind: numeric\n", "- name: n_delinquencies\n  kind: categorical\n", "features"),
    ("segments:\n- region", "segments:\n- channel", "segments"),
    # Joined rows hold the protected attribute's value after the segments' values.
    ("segments:\n- region", "segments:\n- region\n- channel", "segments"),
    ("positive_label: 1", "positive_label: 0", "positive_label"),
    ("drift:\n", "drift:\n  bins: 5\n", "drift.bins"),
    ("drift:\n", "drift:\n  domain_classifier: true\n", "drift.domain_classifier"),
    ("protected_attribute: age_band", "protected_attribute: region", "protected_attribute"),
])
def test_restore_refuses_state_built_under_another_spec(small: tuple, old: str, new: str, named: str) -> None:
    directory, text, blob = small
    assert old in text
    with pytest.raises(StateMismatch, match=rf"model 'credit': changed [^)]*{named}.*new --group"):
        PartitionRunner.restore(blob, references_from(directory, text.replace(old, new, 1)), 1)


def test_restore_refuses_other_reference_data_and_a_model_left_out(small: tuple) -> None:
    import pandas as pd

    directory, text, blob = small
    reference = pd.read_parquet(directory / "reference.parquet")
    reference["income"] = reference["income"] * 1.1
    reference.to_parquet(directory / "reference-retrained.parquet")
    retrained = text.replace("reference.parquet", "reference-retrained.parquet")
    with pytest.raises(StateMismatch, match=r"changed numeric bins \(reference data"):
        PartitionRunner.restore(blob, references_from(directory, retrained), 1)
    other_model = text.replace("model: credit", "model: other", 1)
    with pytest.raises(StateMismatch, match="model 'credit' is not among the specs given"):
        PartitionRunner.restore(blob, references_from(directory, other_model), 1)


def test_restore_carries_state_on_when_only_free_fields_change(small: tuple) -> None:
    import pickle

    directory, text, blob = small
    free = text
    for old, new in [("label_ttl: 120d", "label_ttl: 90d"), ("allowed_lateness: 1h", "allowed_lateness: 2h"),
                     ("  fdr: 0.05", "  fdr: 0.01"), ("    psi: 0.2", "    psi: 0.3"), ("  min: 0.65", "  min: 0.7"),
                     ("fn: -2500.0", "fn: -3000.0"), ("      value: 0.62", "      value: 0.6"),
                     # Features in another order (without the domain classifier, whose sample keeps their order).
                     ("- name: age\n  kind: numeric\n", ""), ("- name: has_mortgage\n", "- name: age\n  kind: numeric\n- name: has_mortgage\n")]:
        assert old in free
        free = free.replace(old, new, 1)
    added = text.replace("model: credit", "model: added", 1)
    restored = PartitionRunner.restore(blob, references_from(directory, free, added), 1)
    assert restored.pipeline.counts == PartitionRunner.restore(blob, references_from(directory, text), 1).pipeline.counts
    # A checkpoint written before signatures were kept is taken as it is.
    state = pickle.loads(blob)
    del state["signatures"]
    PartitionRunner.restore(pickle.dumps(state), references_from(directory, text.replace("window: 1d", "window: 12h")), 1)



def test_partials_built_under_another_spec_are_refused(small: tuple) -> None:
    directory, text, blob = small
    sender = PartitionRunner.restore(blob, references_from(directory, text), 1)
    events = list(merged(directory / "predictions.jsonl", directory / "ground_truth.jsonl"))
    _, partials = sender.process_sources(events[2_000:])
    assert partials and all(p.signature for p in partials)
    payloads = [p.to_bytes() for p in partials]
    PartitionRunner(0, references_from(directory, text), 1).process_partials(payloads)
    changed = PartitionRunner(0, references_from(directory, text.replace("window: 1d", "window: 12h", 1)), 1)
    with pytest.raises(StateMismatch, match="model 'credit' from partition 0 built under other specs.*new --group"):
        changed.process_partials(payloads)
    other = PartitionRunner(0, references_from(directory, text.replace("model: credit", "model: other", 1)), 1)
    with pytest.raises(StateMismatch, match="model 'credit' from partition 0 but the model is not among the specs"):
        other.process_partials(payloads)
    # Partials sent before digests were kept carry none and are taken.
    unsigned = [Partials(p.partition, p.model, p.watermarks, p.drift_windows, p.perf_windows).to_bytes() for p in partials]
    changed.process_partials(unsigned)


def test_feature_order_matters_only_to_the_domain_sample(small: tuple) -> None:
    directory, text, _ = small
    moved = text.replace("- name: age\n  kind: numeric\n", "", 1).replace(
        "- name: has_mortgage\n", "- name: age\n  kind: numeric\n- name: has_mortgage\n", 1)
    assert moved != text

    def signature(spec_text: str) -> dict[str, str]:
        return references_from(directory, spec_text)["credit"].state_signature()

    assert signature(moved) == signature(text)
    with_domain = [t.replace("drift:\n", "drift:\n  domain_classifier: true\n", 1) for t in (text, moved)]
    one, other = map(signature, with_domain)
    assert [part for part in one if one[part] != other[part]] == ["domain_sample"]


def test_restart_without_an_alert_rule_resolves_its_open_alerts(scenario: tuple[dict, list[Message]]) -> None:
    import msgspec

    references, messages = scenario
    runner = PartitionRunner(0, references, 1, now_ms=lambda: 2**62)
    latest_state: dict[str, Any] = {}
    for start in range(0, len(messages), 2_000):
        _, partials = runner.process_sources(messages[start:start + 2_000])
        for alert in runner.process_partials([p.to_bytes() for p in partials]).alerts:
            latest_state[alert.alert_id] = alert
    still_open = {a.alert_id: a for a in latest_state.values() if a.status != "resolved"}
    assert still_open, "the scenario leaves no alert open"
    spec = references["credit"].spec
    quiet = {"credit": load_reference(msgspec.structs.replace(spec, alerts=[]))}
    restored = PartitionRunner.restore(runner.snapshot(), quiet, 1, now_ms=lambda: 2**62)
    retired = restored.process_partials([]).alerts
    assert {a.alert_id: (a.status, a.revision) for a in retired} == {
        i: ("resolved", a.revision + 1) for i, a in still_open.items()}
    assert restored.process_partials([]).alerts == []
