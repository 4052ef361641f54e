"""The `driftline` command as a user runs it: demo, sql, and clear errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest


def driftline(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "driftline", *args], capture_output=True, text=True,
                          timeout=timeout, env={"COLUMNS": "400", "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("demo")
    result = driftline("demo", "--events", "120000", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    return data_dir, result.stdout


def lines(output, pattern):
    return [line for line in output.splitlines() if re.search(pattern, line)]


def test_demo_reports_covariate_shift_and_concept_drift(demo):
    _, out = demo
    drift = lines(out, r"credit/v1 (no drift|drift in)")
    assert len(drift) >= 15
    first_drift = next(i for i, line in enumerate(drift) if "drift in" in line)
    assert first_drift >= 4, "the windows before the covariate shift raise no drift"
    assert all("no drift" in line for line in drift[:first_drift])
    shifted = drift[first_drift]
    for feature in ("channel", "age", "credit_utilization", "income"):
        assert feature in shifted, (feature, shifted)

    performance = lines(out, r"credit/v1 performance")
    assert len(performance) == len(drift)
    first_drop = next(i for i, line in enumerate(performance) if "performance drop" in line)
    assert first_drop > first_drift, "the covariate shift alone does not hurt performance"
    assert all("performance ok" in line for line in performance[:first_drop])
    assert all("performance drop" in line for line in performance[first_drop:])
    assert "roc_auc" in performance[first_drop]


def test_demo_alerts_once_per_phenomenon(demo):
    data_dir, out = demo
    drift = lines(out, r"credit/v1 (no drift|drift in)")
    first_shift_day = next(line for line in drift if "drift in" in line)[:10]
    opened = lines(out, r"^ALERT open")
    assert len(opened) == 2, opened
    input_drift, drop = sorted(opened, key=lambda line: "performance_drop" in line)
    assert "input_drift" in input_drift and first_shift_day in input_drift, "the shift alerts in its first window"
    assert "performance_drop" in drop and "[critical]" in drop
    assert drop.split("credit/v1 ")[1][:10] > first_shift_day, "the covariate shift alone does not hurt performance"
    # The no-drift part raises nothing: every alert line comes after the first shifted window.
    first_alert = next(i for i, line in enumerate(out.splitlines()) if line.startswith("ALERT"))
    assert out.splitlines().index(next(line for line in out.splitlines() if "drift in" in line)) < first_alert
    for rule in ("input_drift", "performance_drop"):
        assert lines(out, rf"^ALERT update .*{rule} update"), f"{rule} is updated in later windows"
    assert len(lines(out, r"retrain requested for credit/v1 by rule performance_drop")) == 1
    stored = driftline("sql", "SELECT rule, count() AS n, max(revision) AS revision FROM alerts FINAL GROUP BY rule ORDER BY rule",
                       "--data-dir", str(data_dir / "store"), "--format", "json")
    assert stored.returncode == 0, stored.stderr
    rows = json.loads(stored.stdout)
    assert [(r["rule"], r["n"]) for r in rows] == [("input_drift", 1), ("performance_drop", 1)]
    assert all(r["revision"] >= 1 for r in rows)


def test_demo_says_where_its_data_is_and_how_to_query_it(demo):
    data_dir, out = demo
    assert str((data_dir / "store").resolve()) in out
    assert "driftline sql" in out


def test_sql_formats(demo):
    data_dir, _ = demo
    store = str(data_dir / "store")
    query = "SELECT metric, count() AS n FROM window_metrics FINAL WHERE segment = 'all' GROUP BY metric ORDER BY metric"
    as_json = driftline("sql", query, "--data-dir", store, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert {"roc_auc", "accuracy", "log_loss", "business_value"} <= {r["metric"] for r in rows}
    as_csv = driftline("sql", query, "--data-dir", store, "--format", "csv")
    assert as_csv.stdout.splitlines()[0].replace('"', "") == "metric,n"
    table = driftline("sql", query, "--data-dir", store)
    assert "roc_auc" in table.stdout


def test_sql_error_is_one_clear_line(demo):
    data_dir, _ = demo
    result = driftline("sql", "SELECT nope FROM window_metrics", "--data-dir", str(data_dir / "store"))
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr


def test_wrong_spec_fails_at_start_naming_file_and_field(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("model: credit\ntask: binary\nfeatures:\n  - {name: age, kind: text}\nreference: {path: r.csv}\n")
    events = tmp_path / "p.jsonl"
    events.write_text("")
    result = driftline("replay", "--spec", str(spec), "--predictions", str(events), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert f"{spec}: features[0].kind: Invalid enum value 'text'; expected one of numeric, categorical" in " ".join(
        result.stderr.split())
    assert "Traceback" not in result.stderr


def test_missing_reference_file_is_named(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("model: credit\ntask: binary\nfeatures: [{name: age, kind: numeric}]\nreference: {path: nowhere.parquet}\n")
    events = tmp_path / "p.jsonl"
    events.write_text("")
    result = driftline("replay", "--spec", str(spec), "--predictions", str(events), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "reference.path: file not found" in result.stderr


def test_sql_without_data_says_what_to_do(tmp_path):
    result = driftline("sql", "SELECT 1", "--data-dir", str(tmp_path / "none"))
    assert result.returncode == 2
    assert "run `driftline demo` or `driftline replay` first" in result.stderr


def test_replay_reads_parquet_like_json_lines(tmp_path):
    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq

    from driftline.scorers.scenario import CreditScenario
    from driftline.storage import open_store

    predictions, ground_truth, _, spec = CreditScenario(seed=11, n_events=6_000).write_event_files(tmp_path)
    for path in (predictions, ground_truth):
        rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
        pq.write_table(pa.Table.from_pylist(rows), path.with_suffix(".parquet"))
    runs = {}
    for kind, suffix in (("jsonl", ".jsonl"), ("parquet", ".parquet")):
        data_dir = tmp_path / kind
        result = driftline("replay", "--spec", str(spec), "--predictions", str(predictions.with_suffix(suffix)),
                           "--ground-truth", str(ground_truth.with_suffix(suffix)), "--data-dir", str(data_dir))
        assert result.returncode == 0, result.stderr
        with open_store(data_dir) as store:
            runs[kind] = (
                store.query_df("SELECT count() AS n FROM predictions FINAL")["n"][0],
                store.query_df("SELECT count() AS n FROM dead_letters FINAL")["n"][0],
                store.query_df("SELECT window_start, segment, metric, value FROM window_metrics FINAL "
                               "ORDER BY window_start, segment, metric"),
            )
    assert runs["parquet"][0] == runs["jsonl"][0] > 0
    assert runs["parquet"][1] == runs["jsonl"][1] == 0
    pd.testing.assert_frame_equal(runs["parquet"][2], runs["jsonl"][2])


def test_replay_retention_days_sets_keeps_and_removes_the_ttl(tmp_path):
    from driftline.scorers.scenario import CreditScenario
    from driftline.storage import open_store

    predictions, ground_truth, _, spec = CreditScenario(seed=5, n_events=2_000).write_event_files(tmp_path)
    data_dir = tmp_path / "store"
    ttl_tables = ("dead_letters", "ground_truth", "labeled", "predictions")

    def replay(*extra):
        result = driftline("replay", "--spec", str(spec), "--predictions", str(predictions),
                           "--ground-truth", str(ground_truth), "--data-dir", str(data_dir), *extra)
        assert result.returncode == 0, result.stderr
        with open_store(data_dir) as store:
            engines = {r["name"]: r["engine_full"] for r in store.query(
                "SELECT name, engine_full FROM system.tables WHERE database = 'driftline' AND has({t:Array(String)}, name)",
                {"t": list(ttl_tables)}).to_pylist()}
            n = store.query("SELECT count() AS n FROM predictions FINAL").to_pylist()[0]["n"]
        assert sorted(engines) == list(ttl_tables)
        return engines, n

    engines, n = replay("--retention-days", "9000")
    assert n > 0
    assert all("TTL toDateTime" in e and "toIntervalDay(9000)" in e for e in engines.values()), engines
    engines, again = replay()
    assert again == n
    assert all("toIntervalDay(9000)" in e for e in engines.values()), "without the option the retention stays"
    engines, again = replay("--retention-days", "0")
    assert again == n
    assert not any(" TTL " in e for e in engines.values()), engines

    bad = driftline("replay", "--spec", str(spec), "--predictions", str(predictions), "--retention-days", "10001",
                    "--data-dir", str(data_dir))
    assert bad.returncode == 2
    assert "--retention-days" in bad.stderr and "10001" in bad.stderr


def test_demo_accepts_retention_days(tmp_path):
    from driftline.storage import open_store

    result = driftline("demo", "--events", "1000", "--retention-days", "9000", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    with open_store(tmp_path / "store") as store:
        engine = store.query("SELECT engine_full FROM system.tables WHERE database = 'driftline' AND name = 'predictions'"
                             ).to_pylist()[0]["engine_full"]
    assert "toIntervalDay(9000)" in engine
