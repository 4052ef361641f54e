"""The ``driftline`` command: demo, replay, sql, simulate, worker."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import click
import orjson
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from driftline.config import SpecError, load_spec
from driftline.events import Alert
from driftline.reference import ModelReference, load_reference
from driftline.storage import StoreError, format_result, masked_url, open_store
from driftline.storage.schema import MAX_RETENTION_DAYS
from driftline.streams.embedded import EmbeddedRunner, RunSummary
from driftline.streams.gc_policy import settle_heap
from driftline.streams.pipeline import Message, Output
from driftline.streams.sources import merged

DEFAULT_DATA_DIR = "driftline-data"

EXAMPLE_QUERIES = {
    "Which features drifted, per window": (
        "SELECT window_start, feature, test, round(effect_size, 3) AS effect, p_adjusted, n_current "
        "FROM drift_results FINAL WHERE drifted = 1 AND target = 'feature' ORDER BY window_start, feature, test"
    ),
    "ROC AUC and label coverage per window": (
        "SELECT window_start, round(value, 3) AS roc_auc, n, round(label_coverage, 2) AS coverage, p_value "
        "FROM window_metrics FINAL WHERE metric = 'roc_auc' AND segment = 'all' ORDER BY window_start"
    ),
    "Dead letters by reason": "SELECT reason, count() AS n FROM dead_letters FINAL GROUP BY reason ORDER BY n DESC",
}


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


_SHOWN_METRICS = ("roc_auc", "accuracy", "recall", "log_loss", "business_value_per_prediction")


_STATUS_STYLE = {"open": "bold red", "update": "yellow", "resolved": "green"}


def alert_line(alert: Alert) -> str:
    """One line (rich markup) for an alert state, as the demo and `alerts tail` print it."""
    style = _STATUS_STYLE.get(alert.status, "bold")
    return (f"[{style}]ALERT {alert.status}[/] {escape(f'[{alert.severity}]')} {escape(alert.model)}/"
            f"{escape(alert.version)} {_day(alert.window_start)}: {escape(alert.message)}")


class Reporter:
    """Prints what a person watching the stream should hear, from the rows the pipeline emits.

    Drift: one line per window when it closes. Performance: one line per window once half of
    its predictions are labeled (labels keep arriving; the stored rows keep being updated), or
    at the end of the stream for windows that never got there.
    """

    def __init__(self, console: Console, coverage: float = 0.5):
        self.console = console
        self.coverage = coverage
        self._latest: dict[tuple[str, str, int], dict[str, dict]] = {}
        self._reported: set[tuple[str, str, int]] = set()

    def __call__(self, out: Output) -> None:
        self._drift([r for r in out.drift_results if r["target"] != "label"])
        for alert in out.alerts:
            self.console.print(alert_line(alert), highlight=False)
        for request in out.retrain_requests:
            self.console.print(f"    [magenta]retrain requested[/] for {request.model}/{request.version} by rule "
                               f"{request.rule}: data {_day(request.data_from)} to {_day(request.data_to)}", highlight=False)
        for row in out.window_metrics:
            if row["segment"] == "all":
                key = (row["model"], row["version"], row["window_start"])
                self._latest.setdefault(key, {})[row["metric"]] = row
        for key in sorted(self._latest):
            rows = self._latest[key]
            if key not in self._reported and rows and next(iter(rows.values()))["label_coverage"] >= self.coverage:
                self._performance(key)

    def finish(self) -> None:
        for key in sorted(set(self._latest) - self._reported):
            self._performance(key)

    def _prefix(self, model: str, version: str, start: int) -> str:
        return f"[bold]{_day(start)}[/] {model}/{version}"

    def _drift(self, rows: list[dict]) -> None:
        windows: dict[tuple[str, str, int], list[dict]] = {}
        for row in rows:
            windows.setdefault((row["model"], row["version"], row["window_start"]), []).append(row)
        for (model, version, start), all_rows in sorted(windows.items()):
            window_rows = [r for r in all_rows if r["target"] != "multivariate"]
            domain = [r for r in all_rows if r["test"] == "domain_auc"]
            note = f"; domain classifier AUC {domain[0]['statistic']:.2f}" if domain else ""
            drifted: dict[str, dict] = {}
            for row in window_rows:
                if row["drifted"] and (row["feature"] not in drifted or row["effect_size"] > drifted[row["feature"]]["effect_size"]):
                    drifted[row["feature"]] = row
            n = max(r["n_current"] for r in window_rows)
            features = {r["feature"] for r in window_rows}
            if not drifted:
                self.console.print(f"{self._prefix(model, version, start)} [green]no drift[/] "
                                   f"({len(window_rows)} tests on {len(features)} columns, n={n:,}{note})")
                continue
            ranked = sorted(drifted.items(), key=lambda kv: -kv[1]["effect_size"])
            parts = []
            for feature, row in ranked[:3]:
                p = "" if row["p_adjusted"] is None else f", p_adj={row['p_adjusted']:.0e}"
                parts.append(f"{feature} ({row['test']} {row['effect_size']:.2f}{p})")
            parts.extend(feature for feature, _ in ranked[3:])
            self.console.print(f"{self._prefix(model, version, start)} [yellow]drift in {len(drifted)} of "
                               f"{len(features)} columns[/]: {', '.join(parts)} (n={n:,}{note})")

    def _performance(self, key: tuple[str, str, int]) -> None:
        self._reported.add(key)
        rows = self._latest[key]
        first = next(iter(rows.values()))
        parts, flags = [], []
        for metric in _SHOWN_METRICS:
            row = rows.get(metric)
            if row is None:
                continue
            baseline = "" if row["baseline"] is None else f" (ref {row['baseline']:.3f})"
            parts.append(f"{metric} {row['value']:.3f}{baseline}" if metric != "business_value_per_prediction"
                         else f"value/prediction {row['value']:.1f}")
        for metric, row in rows.items():
            if row["breached"]:
                p = "" if row["p_value"] is None else f", worse than reference p={row['p_value']:.0e}"
                flags.append(f"{metric} {row['value']:.3f} breaches {row['threshold']}{p}")
        status = f"[red]performance drop[/]: {'; '.join(flags)}" if flags else "[green]performance ok[/]"
        self.console.print(f"{self._prefix(*key)} {status}  [dim]{', '.join(parts)}; "
                           f"n={first['n']:,}, label coverage {first['label_coverage']:.0%}[/]")


def _run(runner_args: dict, messages: Iterator[Message], total: int | None, console: Console) -> RunSummary:
    """Run the embedded pipeline with a progress bar; settles this process's heap first
    (:func:`~driftline.streams.gc_policy.settle_heap`), as a command that owns the process."""
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("events", total=total)
        reporter = Reporter(progress.console)

        def on_output(out: Output, consumed: int) -> None:
            reporter(out)
            progress.advance(task, consumed)

        runner = EmbeddedRunner(**runner_args, on_output=on_output)
        settle_heap()
        summary = runner.run(messages)
        reporter.finish()
        return summary


def _summary(console: Console, summary: RunSummary, seconds: float, data_dir: Path) -> None:
    console.print(
        f"\nProcessed {summary.messages:,} events in {seconds:.1f} s "
        f"({summary.predictions:,} predictions, {summary.ground_truth:,} labels, {summary.labeled:,} joined, "
        f"{summary.dead_letters:,} dead letters); stored {summary.metric_rows:,} metric rows and "
        f"{summary.drift_rows:,} drift rows in {data_dir.resolve()}"
    )


def _explore(console: Console, data_dir: Path) -> None:
    console.print("\nExplore what was stored:")
    for title, sql in EXAMPLE_QUERIES.items():
        console.print(f"  # {title}")
        console.print(f"  driftline sql \"{sql}\" --data-dir {data_dir}", soft_wrap=True, highlight=False)


retention_option = click.option(
    "--retention-days", type=click.IntRange(0, MAX_RETENTION_DAYS), default=None,
    help="Days raw events (predictions, ground truth, labeled rows, dead letters) are kept after their event time; "
         "0 keeps them forever. Unset: an existing store keeps its retention, a new one keeps events forever.",
)


def _retention(days: int | None) -> dict[str, int | None]:
    """``open_store`` keyword for ``--retention-days``: unset leaves the store's retention as it is."""
    return {} if days is None else {"retention_days": days or None}


@click.group()
@click.version_option(package_name="driftline")
def main() -> None:
    """driftline: streaming monitoring for models in production."""



def _brokers(broker: str) -> list[str]:
    """The ``host:port`` entries of a ``--broker`` value."""
    brokers = [b.strip() for b in broker.split(",") if b.strip()]
    if not brokers:
        raise click.UsageError(f"--broker must be host:port[,host:port], got {broker!r}")
    return brokers


def _references(spec_paths: tuple[Path, ...]) -> dict[str, ModelReference]:
    """Each spec's reference, keyed by model; two specs of one model are a usage error."""
    specs = [load_spec(p) for p in spec_paths]
    models = [s.model for s in specs]
    repeated = sorted({m for m in models if models.count(m) > 1})
    if repeated:
        raise click.UsageError(f"--spec: model {', '.join(map(repr, repeated))} is defined by more than one spec")
    return {s.model: load_reference(s) for s in specs}


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("driftline-demo"),
              show_default=True, help="Where the demo's chDB store and generated files go.")
@click.option("--events", "n_events", type=click.IntRange(min=1_000), default=200_000, show_default=True,
              help="Number of predictions to simulate.")
@click.option("--seed", type=int, default=7, show_default=True)
@retention_option
def demo(data_dir: Path, n_events: int, seed: int, retention_days: int | None) -> None:
    """Simulate a credit-scoring model in production and monitor it end to end."""
    from driftline.scorers.scenario import CreditScenario

    console = Console()
    started = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]driftline demo[/]: a credit-scoring model, {n_events:,} applications, labels arriving late.")
    scenario = CreditScenario(seed=seed, n_events=n_events)
    reference_path = data_dir / "reference.parquet"
    scenario.reference_frame().to_parquet(reference_path, index=False)
    spec_path = data_dir / "credit.yaml"
    spec_path.write_text(yaml.safe_dump(scenario.spec_dict(reference_path.name), sort_keys=False))
    spec = load_spec(spec_path)
    references = {spec.model: load_reference(spec)}
    console.print(
        f"Reference: {references[spec.model].n_rows:,} rows; window {spec.window}; covariate shift at "
        f"{scenario.covariate_shift_at:.0%} of the stream, concept drift at {scenario.concept_drift_at:.0%}.\n"
    )

    def messages() -> Iterator[Message]:
        for i, (_, kind, event) in enumerate(scenario.events()):
            yield Message(kind, orjson.dumps(event), "demo", str(i))

    store_dir = data_dir / "store"
    with open_store(store_dir, **_retention(retention_days)) as store:
        summary = _run({"references": references, "store": store}, messages(), None, console)
    _summary(console, summary, time.perf_counter() - started, store_dir)
    _explore(console, store_dir)


@main.command()
@click.option("--spec", "spec_paths", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Model spec YAML (repeatable).")
@click.option("--predictions", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Prediction events: JSON Lines or Parquet, in event-time order.")
@click.option("--ground-truth", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Ground-truth events: JSON Lines or Parquet, in the order the truth became known.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(DEFAULT_DATA_DIR),
              show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=20_000, show_default=True)
@retention_option
def replay(spec_paths: tuple[Path, ...], predictions: Path, ground_truth: Path | None, data_dir: Path,
           batch_size: int, retention_days: int | None) -> None:
    """Process event files through the pipeline (backfills, checks, experiments)."""
    console = Console()
    started = time.perf_counter()
    references = _references(spec_paths)
    with open_store(data_dir, **_retention(retention_days)) as store:
        summary = _run({"references": references, "store": store, "batch_size": batch_size},
                       merged(predictions, ground_truth), None, console)
    _summary(console, summary, time.perf_counter() - started, data_dir)


@main.command()
@click.argument("query")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(DEFAULT_DATA_DIR),
              show_default=True, help="The embedded store to query.")
@click.option("--store", "store_url", help="Query a ClickHouse server instead: clickhouse://user:password@host:9000/db.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def sql(query: str, data_dir: Path, store_url: str | None, fmt: str) -> None:
    """Run a SQL query on the store (tables live in the `driftline` database)."""
    if store_url is None and not data_dir.exists():
        raise click.UsageError(f"no driftline data in {data_dir}: run `driftline demo` or `driftline replay` first")
    with open_store(store_url or data_dir) as store:
        click.echo(format_result(store.query(query), fmt))


@main.command()
@click.option("--broker", required=True, help="Kafka bootstrap servers, host:port[,host:port].")
@click.option("--rate", type=click.FloatRange(min=0), required=True,
              help="Events (predictions plus ground truths) per second of wall clock; 0 = as fast as possible.")
@click.option("--events", "n_events", type=click.IntRange(min=1), default=200_000, show_default=True,
              help="Number of predictions in the scenario (ground truths come on top).")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--partitions", type=click.IntRange(min=1), default=4, show_default=True,
              help="Partition count of both topics: created if missing, checked if they exist.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("driftline-simulate"), show_default=True,
              help="Where spec.yaml, reference.parquet and the scenario's event files are written.")
@click.option("--predictions-topic", default="driftline.predictions", show_default=True)
@click.option("--ground-truth-topic", default="driftline.ground_truth", show_default=True)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds to wait for the broker to answer.")
def simulate(broker: str, rate: float, n_events: int, seed: int, partitions: int, out_dir: Path,
             predictions_topic: str, ground_truth_topic: str, timeout: float) -> None:
    """Publish the demo's credit-scoring scenario (predictions, delayed ground truth) to Kafka."""
    import logging

    from rich.progress import TimeRemainingColumn

    from driftline.scorers.scenario import CreditScenario
    from driftline.scorers.sdk import DriftlineProducer
    from driftline.scorers.simulate import publish_scenario
    from driftline.streams.topics import KafkaSetupError, ensure_topics

    console, errors = Console(), Console(stderr=True)
    # kafka-python logs every failed connection attempt; this command reports the outcome itself.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    brokers = _brokers(broker)
    if predictions_topic == ground_truth_topic:
        raise click.UsageError(f"--predictions-topic and --ground-truth-topic must differ, both are {predictions_topic!r}")
    try:
        created = ensure_topics(brokers, [predictions_topic, ground_truth_topic], partitions, timeout=timeout)
    except KafkaSetupError as error:
        errors.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
    for topic, new in created.items():
        console.print(f"Topic {topic}: {'created' if new else 'exists'}, {partitions} partitions.", highlight=False)

    scenario = CreditScenario(seed=seed, n_events=n_events)
    predictions_path, ground_truth_path, _, spec_path = scenario.write_event_files(out_dir)
    # The ground-truth file holds exactly the labels the stream emits, one per line.
    with open(ground_truth_path, "rb") as fh:
        total = n_events + sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    console.print(
        f"Wrote {spec_path} (reference: {spec_path.with_name('reference.parquet')}) and the events as JSON Lines.",
        highlight=False, soft_wrap=True,
    )
    if (predictions_topic, ground_truth_topic) == ("driftline.predictions", "driftline.ground_truth"):
        console.print(f"  start a worker:  driftline worker --spec {spec_path} --broker {broker} --partitions {partitions}",
                      highlight=False, soft_wrap=True)
    console.print(f"  same events, embedded:  driftline replay --spec {spec_path} --predictions {predictions_path} "
                  f"--ground-truth {ground_truth_path}", highlight=False, soft_wrap=True)

    failures: list[str] = []

    def on_error(error: BaseException, event_id: str) -> None:
        if len(failures) < 3:
            failures.append(f"{event_id}: {error!r}")

    pace = "as fast as possible" if rate == 0 else f"at {rate:,g} events/s"
    producer = DriftlineProducer(brokers, predictions_topic=predictions_topic, ground_truth_topic=ground_truth_topic,
                                 block_on_full=True, on_error=on_error, bootstrap_timeout_ms=int(timeout * 1000))
    with producer, Progress(TextColumn("publishing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TimeRemainingColumn(), console=console, transient=False) as bar:
        task = bar.add_task("publish", total=total)
        console.print(f"Publishing {total:,} events {pace} to {broker} ...", highlight=False)
        summary = publish_scenario(scenario, producer, rate, lambda n: bar.update(task, completed=n))
    console.print(
        f"Sent {summary.predictions:,} predictions and {summary.ground_truth:,} ground truths "
        f"({summary.events:,} events) in {summary.seconds:.1f} s ({summary.rate:,.0f} events/s): "
        f"delivered {summary.delivered:,}, failed {summary.failed:,}, dropped {summary.dropped:,}.",
        highlight=False, soft_wrap=True,
    )
    if not summary.ok:
        for line in failures:
            errors.print(f"  {line}", highlight=False, soft_wrap=True)
        errors.print(f"[bold red]error:[/] {summary.failed + summary.dropped:,} events were not delivered",
                     highlight=False, soft_wrap=True)
        sys.exit(1)


@main.command()
@click.option("--spec", "spec_paths", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Model spec YAML (repeatable).")
@click.option("--broker", default="127.0.0.1:9092", show_default=True, help="Kafka bootstrap servers, host:port[,host:port].")
@click.option("--store", "store_target", default=DEFAULT_DATA_DIR, show_default=True,
              help="clickhouse://user:password@host:9000/db, or an embedded data directory (one worker only).")
@click.option("--group", default="driftline", show_default=True, help="Consumer group: workers of one group share partitions.")
@click.option("--topic-prefix", default="driftline.", show_default=True)
@click.option("--partitions", type=click.IntRange(min=1), default=4, show_default=True,
              help="Partition count of the topics (created when missing; existing ones must have it).")
@click.option("--replication", type=click.IntRange(min=1), default=1, show_default=True,
              help="Replication factor for topics that do not exist yet.")
@click.option("--batch-size", type=click.IntRange(min=1), default=25_000, show_default=True,
              help="Most input messages per fetch, the unit the worker processes, stores and publishes.")
@click.option("--checkpoint-interval", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds between state checkpoints (bounds the work replayed after a crash).")
@click.option("--store-batch-rows", type=click.IntRange(min=0), default=50_000, show_default=True,
              help="Raw events and joined rows are written to the store in blocks of about this many "
                   "(0: after every fetch); an idle stream's rows are written within two seconds.")
@click.option("--status-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Keep a JSON status here (offsets, counters), rewritten after every batch.")
@retention_option
def worker(spec_paths: tuple[Path, ...], broker: str, store_target: str, group: str, topic_prefix: str,
           partitions: int, replication: int, batch_size: int, checkpoint_interval: float, store_batch_rows: int,
           status_file: Path | None, retention_days: int | None) -> None:
    """Run a stream worker on Kafka (more workers with the same --group share the partitions).

    \b
    Exit codes: 0 stopped (SIGTERM, Ctrl-C); 2 a wrong spec or option, or a topic cannot be set
    up; 70 an unexpected error (a restart resumes from the last checkpoint); 78 the group's
    checkpoints were built under other specs (see docs/config.md, "Changing a spec").
    """
    from driftline.streams.faust_app import PARTIALS_MAX_BYTES, Topics, Worker, WorkerSettings, partials_topic
    from driftline.streams.topics import KafkaSetupError, ensure_topics

    references = _references(spec_paths)
    brokers = tuple(_brokers(broker))
    topics = Topics.with_prefix(topic_prefix)
    try:
        ensure_topics(brokers, [topics.predictions, topics.ground_truth, partials_topic(group), topics.labeled,
                                topics.deadletter, topics.alerts, topics.retrain], partitions, replication=replication,
                      compacted=[topics.alerts],
                      configs={partials_topic(group): {"max.message.bytes": str(PARTIALS_MAX_BYTES)}})
    except KafkaSetupError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
    settings = WorkerSettings(brokers, group, partitions, topics, batch_size=batch_size, checkpoint_interval=checkpoint_interval,
                              status_file=None if status_file is None else str(status_file), store_batch_rows=store_batch_rows)
    with open_store(store_target, **_retention(retention_days)) as store:
        Console(stderr=True).print(
            f"driftline worker: group {group}, {partitions} partitions, models {', '.join(references)}, "
            f"store {masked_url(store_target)}",
            highlight=False,
        )
        Worker(references, store, settings).run()


@main.group()
def alerts() -> None:
    """Follow alerts published on Kafka."""


_SEVERITIES = ("info", "warning", "critical")


@alerts.command()
@click.option("--broker", default="127.0.0.1:9092", show_default=True, help="Kafka bootstrap servers, host:port[,host:port].")
@click.option("--topic", default="driftline.alerts", show_default=True)
@click.option("--model", "models", multiple=True, help="Only this model (repeatable).")
@click.option("--severity", type=click.Choice(_SEVERITIES), help="Only alerts at least this severe.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest alert the topic keeps instead of new ones.")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many alerts.")
@click.option("--timeout", type=click.FloatRange(min=0.1), help="Stop after this many seconds without an alert.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def tail(broker: str, topic: str, models: tuple[str, ...], severity: str | None, from_beginning: bool,
         limit: int | None, timeout: float | None, fmt: str) -> None:
    """Print alert states as they are published (open, update, resolved)."""
    import logging

    import msgspec
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    console = Console()
    floor = _SEVERITIES.index(severity) if severity else 0
    try:
        # No consumer group: every `tail` sees every alert, and none moves another's offsets.
        consumer = KafkaConsumer(bootstrap_servers=_brokers(broker),
                                 enable_auto_commit=False, consumer_timeout_ms=int((timeout or 0) * 1000) or float("inf"))
        partitions = consumer.partitions_for_topic(topic)
    except KafkaError as error:
        raise click.ClickException(f"cannot reach Kafka at {broker}: {error}") from None
    if not partitions:
        consumer.close()
        raise click.ClickException(f"topic {topic!r} does not exist (a worker creates it)")
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    if from_beginning:
        consumer.seek_to_beginning(*assigned)
    else:
        consumer.seek_to_end(*assigned)
    decoder = msgspec.json.Decoder(Alert)
    shown = 0
    try:
        for message in consumer:
            if message.value is None:
                continue
            try:
                alert = decoder.decode(message.value)
            except msgspec.ValidationError as error:
                console.print(f"[dim]skipped a message that is not an alert ({error})[/]", highlight=False)
                continue
            if (models and alert.model not in models) or _SEVERITIES.index(alert.severity) < floor:
                continue
            if fmt == "json":
                click.echo(message.value.decode())
            else:
                console.print(alert_line(alert), highlight=False, soft_wrap=True)
            shown += 1
            if limit is not None and shown >= limit:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


def run() -> None:
    """Console-script entry point: user errors print one clear line, not a traceback."""
    try:
        main(standalone_mode=True)
    except (SpecError, StoreError) as error:
        Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False)
        sys.exit(2)
