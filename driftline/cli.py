"""The ``driftline`` command: demo, replay, sql."""

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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from driftline.config import SpecError, load_spec
from driftline.reference import load_reference
from driftline.storage import StoreError, format_result, open_store
from driftline.streams.embedded import EmbeddedRunner, RunSummary
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


@click.group()
@click.version_option(package_name="driftline")
def main() -> None:
    """driftline: streaming monitoring for models in production."""


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("driftline-demo"),
              show_default=True, help="Where the demo's chDB store and generated files go.")
@click.option("--events", "n_events", type=click.IntRange(min=1_000), default=200_000, show_default=True,
              help="Number of predictions to simulate.")
@click.option("--seed", type=int, default=7, show_default=True)
def demo(data_dir: Path, n_events: int, seed: int) -> None:
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
    with open_store(store_dir) as store:
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
def replay(spec_paths: tuple[Path, ...], predictions: Path, ground_truth: Path | None, data_dir: Path,
           batch_size: int) -> None:
    """Process event files through the pipeline (backfills, checks, experiments)."""
    console = Console()
    started = time.perf_counter()
    specs = [load_spec(p) for p in spec_paths]
    models = [s.model for s in specs]
    repeated = sorted({m for m in models if models.count(m) > 1})
    if repeated:
        raise click.UsageError(f"--spec: model {', '.join(map(repr, repeated))} is defined by more than one spec")
    references = {s.model: load_reference(s) for s in specs}
    with open_store(data_dir) as store:
        summary = _run({"references": references, "store": store, "batch_size": batch_size},
                       merged(predictions, ground_truth), None, console)
    _summary(console, summary, time.perf_counter() - started, data_dir)


@main.command()
@click.argument("query")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(DEFAULT_DATA_DIR),
              show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def sql(query: str, data_dir: Path, fmt: str) -> None:
    """Run a SQL query on the store (tables live in the `driftline` database)."""
    if not data_dir.exists():
        raise click.UsageError(f"no driftline data in {data_dir}: run `driftline demo` or `driftline replay` first")
    with open_store(data_dir) as store:
        click.echo(format_result(store.query(query), fmt))


def run() -> None:
    """Console-script entry point: user errors print one clear line, not a traceback."""
    try:
        main(standalone_mode=True)
    except (SpecError, StoreError) as error:
        Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False)
        sys.exit(2)
