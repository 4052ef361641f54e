"""Alert rules over drift and metric rows: lifecycle, hysteresis, cool-down, retrain requests.

:class:`AlertEngine` takes the rows the pipeline emits for ``drift_results`` and
``window_metrics`` and returns the alert states (and retrain requests) they cause. It is
runtime-agnostic like the window processors: every piece of state lives in the mapping it is
given, as plain tuples and dicts, so the embedded runtime passes a ``dict`` and the Faust runtime
checkpoints it with the rest.

How a rule is evaluated
-----------------------
A rule watches one *track*: (model, version, rule, subject), where the subject is a feature or
segment, or ``"*"`` for any of them (one alert for all). Each window of a track is evaluated on
the latest revision of its rows:

* an item (a feature, a segment) is *eligible* when its window holds at least ``min_samples``
  values (and, for metrics, ``min_label_coverage``); it *fires* when the fire threshold is met
  and the p-value and effect gates hold; it *clears* when the clear threshold is met;
* a window fires when some eligible item fires, clears when every eligible item clears, and is
  skipped (neither counts nor breaks a run) when no item is eligible.

The lifecycle is a function of the track's windows in event-time order: ``for_windows``
consecutive firing windows open an alert (unless a cool-down is running), every later window
updates it, a clearing window resolves it and starts the cool-down. Between the two thresholds
(hysteresis) an open alert stays open. Because a late label can revise a past window, the
engine keeps each track's windows for as long as they can still change (``label_ttl`` for metrics
and target drift, the allowed lateness for input drift), replays the lifecycle over them, and
emits only the states that differ from what it emitted before: feeding the same rows twice
emits nothing, and the final states do not depend on how the rows were batched. A revision that
takes back the evidence of an open alert resolves it.

Ids are hashes: ``alert_id`` of (model, version, rule, subject, opening window start), a retrain
request's id of its ``alert_id``, so a replay or a restart writes the same keys.

Examples
--------
>>> from driftline.config import parse_spec
>>> spec = parse_spec({"model": "m", "task": "binary", "features": [{"name": "x", "kind": "numeric"}],
...                    "reference": {"path": "r.csv"}, "window": "1h", "metrics": [{"name": "accuracy", "min": 0.8}]})
>>> engine = AlertEngine({}, {"m": spec})
>>> def row(start, value, revision=500):
...     return {"model": "m", "version": "v1", "segment": "all", "window_start": start, "window_end": start + 3600000,
...             "metric": "accuracy", "value": value, "n": 500, "label_coverage": 1.0, "p_value": None,
...             "revision": revision}
>>> [(a.status, a.value) for a in engine.evaluate([], [row(0, 0.9)])[0]]
[]
>>> alerts, _ = engine.evaluate([], [row(3600000, 0.7)])
>>> [(a.rule, a.status, a.value, a.revision) for a in alerts]
[('accuracy_min', 'open', 0.7, 0)]
>>> [(a.status, a.value, a.revision) for a in engine.evaluate([], [row(7200000, 0.85)])[0]]
[('resolved', 0.85, 1)]
>>> engine.evaluate([], [row(7200000, 0.85)])
([], [])

"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, MutableMapping
from typing import Any

from driftline.config import HYPOTHESIS_TESTS, AlertRule, ModelSpec, alert_rules
from driftline.events import Alert, RetrainRequest

_WITHDRAWN = "withdrawn: revised results no longer meet the rule"
_RETIRED = "retired: the rule is no longer in the spec"
_LABEL_TARGETS = ("label",)


def stable_id(*parts: Any) -> str:
    """A 32-hex-digit id of the parts (BLAKE2b), the same in every process and run.

    >>> stable_id("m", "v1", "rule", "*", 0) == stable_id("m", "v1", "rule", "*", 0)
    True
    """
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(str(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _finite(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _drift_matches(rule: AlertRule, row: Mapping[str, Any]) -> bool:
    """Whether a drift row belongs to the rule's feature (any test)."""
    if rule.feature == "*":
        return row["target"] == ("multivariate" if rule.test == "domain_auc" else "feature")
    return row["feature"] == rule.feature and row["target"] != "multivariate"


def _drift_tests(rule: AlertRule) -> frozenset[str]:
    """The tests a drift rule reads: its own, the effect gate's and the significance tests."""
    tests = {rule.test}
    if rule.effect is not None:
        tests.add(rule.effect.test)
    if rule.p_value is not None and rule.test not in HYPOTHESIS_TESTS.values():
        tests.update(HYPOTHESIS_TESTS.values())
    return frozenset(tests)  # type: ignore[arg-type]


class AlertEngine:
    """Evaluate alert rules on drift and metric rows; keep every alert's lifecycle in ``state``.

    Parameters
    ----------
    state
        The mapping holding all alert state (``dict`` in the embedded runtime). Keys are
        ``("alert", model, version, rule, subject)``; values are plain dicts of tuples.
    specs
        Model name -> spec; each spec's :attr:`~driftline.config.ModelSpec.alert_rules` are
        evaluated. Rows of other models are ignored.

    Attributes
    ----------
    ignored_rows
        Rows of unknown models, or of windows older than everything a track still keeps.
    """

    def __init__(self, state: MutableMapping[Any, Any], specs: Mapping[str, ModelSpec]):
        if not isinstance(specs, Mapping) or not all(isinstance(s, ModelSpec) for s in specs.values()):
            raise TypeError(f"specs must be a mapping of model name -> ModelSpec, got {type(specs).__name__}")
        self.state = state
        self.specs = dict(specs)
        self.rules = {model: {r.name: r for r in alert_rules(spec)} for model, spec in self.specs.items()}
        self._drift = {m: [r for r in rules.values() if r.on == "drift"] for m, rules in self.rules.items()}
        self._metric = {m: [r for r in rules.values() if r.on == "metric"] for m, rules in self.rules.items()}
        self._reads = {m: {r.name: _drift_tests(r) for r in rules} for m, rules in self._drift.items()}
        self.ignored_rows = 0

    def evaluate(
        self, drift_rows: list[dict[str, Any]], metric_rows: list[dict[str, Any]]
    ) -> tuple[list[Alert], list[RetrainRequest]]:
        """Take result rows (any windows, any order, repeats allowed) and return the alert states
        and retrain requests they cause, ordered by ``fired_at``."""
        tracks: dict[tuple[Any, ...], dict[str, Any]] = {}
        families = self._families(drift_rows)
        for row in drift_rows:
            model = row["model"]
            if model not in self.rules:
                self.ignored_rows += 1
                continue
            family = families[_family_key(row)]
            for rule in self._drift[model]:
                if row["test"] not in self._reads[model][rule.name] or not _drift_matches(rule, row):
                    continue
                item = (row["feature"], row["test"])
                value = (
                    int(row["revision"]), int(row["window_end"]), float(row["effect_size"]), row["p_value"],
                    row["p_adjusted"], family, int(row["n_current"]),
                )
                self._put(tracks, model, row["version"], rule, int(row["window_start"]), item, value)
        for row in metric_rows:
            model = row["model"]
            if model not in self.rules:
                self.ignored_rows += 1
                continue
            for rule in self._metric[model]:
                if row["metric"] != rule.metric or (rule.segment != "*" and row["segment"] != rule.segment):
                    continue
                value = (
                    int(row["revision"]), int(row["window_end"]), float(row["value"]), row["p_value"], None, None,
                    int(row["n"]), float(row["label_coverage"]),
                )
                self._put(tracks, model, row["version"], rule, int(row["window_start"]), row["segment"], value)
        alerts: list[Alert] = []
        requests: list[RetrainRequest] = []
        for key in sorted(tracks, key=repr):
            self._settle(key, tracks[key], alerts, requests)
        alerts.sort(key=lambda a: (a.fired_at, a.model, a.version, a.rule, a.alert_id, a.revision))
        requests.sort(key=lambda r: (r.requested_at, r.request_id))
        return alerts, requests

    def retire(self) -> list[Alert]:
        """Resolve the alerts still open under rules the specs no longer have (removed, renamed,
        or now watching another feature, segment, test or metric) and empty those rules' tracks.

        Called when the engine takes over state kept under older specs (a worker restored from
        its checkpoint); otherwise those alerts would stay open for good, since only the rules
        in force are evaluated. A retired track keeps only its alerts' last states, so that a
        rule put back later numbers their states on from there (the alert ids depend on the
        opening window); its windows are dropped, since they were judged by the old rule. Models
        the specs do not name are left alone.
        """
        alerts: list[Alert] = []
        for key in sorted((k for k in self.state.keys() if isinstance(k, tuple) and k[:1] == ("alert",)), key=repr):
            _, model, version, name, subject = key
            if model not in self.rules:
                continue
            track = self.state[key]
            rule = self.rules[model].get(name)
            facts = track.get("facts")
            if (rule is not None and rule.subject == subject
                    and (facts is None or (facts[1], facts[2]) == (rule.watched, rule.on))):
                continue
            if not track["windows"] and all(state[0] == "resolved" for state in track["emitted"].values()):
                continue
            emitted = dict(track["emitted"])
            for alert_id, (status, revision, fired_at, summary) in sorted(emitted.items()):
                if status == "resolved":
                    continue
                alert = _retired(key, facts, alert_id, revision, fired_at, summary)
                emitted[alert_id] = ("resolved", alert.revision, alert.fired_at, summary)
                alerts.append(alert)
            self.state[key] = _new_track(emitted)
        alerts.sort(key=lambda a: (a.fired_at, a.model, a.version, a.rule, a.alert_id))
        return alerts

    # -- rows into tracks ------------------------------------------------------------------

    @staticmethod
    def _families(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], int]:
        """Size of each family: the tests with a p-value that one BH adjustment covered."""
        sizes: dict[tuple[Any, ...], int] = {}
        for row in rows:
            key = _family_key(row)
            sizes[key] = sizes.get(key, 0) + (row["p_value"] is not None)
        return sizes

    def _put(
        self, tracks: dict[tuple[Any, ...], dict[str, Any]], model: str, version: str, rule: AlertRule,
        start: int, item: Any, value: tuple[Any, ...],
    ) -> None:
        key = ("alert", model, version, rule.name, rule.subject)
        track = tracks.get(key)
        if track is None:
            track = self.state.get(key) or _new_track({})
            track = {**track, "windows": dict(track["windows"])}
            tracks[key] = track
        if track["floor"] is not None and start < track["floor"]:
            self.ignored_rows += 1
            return
        items = dict(track["windows"].get(start, {}))
        held = items.get(item)
        if held is not None and held[0] >= value[0]:
            return
        items[item] = value
        track["windows"][start] = items
        track["dirty"] = True

    # -- lifecycle -------------------------------------------------------------------------

    def _settle(self, key: tuple[Any, ...], track: dict[str, Any], alerts: list[Alert], requests: list[RetrainRequest]) -> None:
        if not track.pop("dirty", False):
            return
        _, model, version, name, subject = key
        spec, rule = self.specs[model], self.rules[model][name]
        starts = sorted(track["windows"])
        windows = [(s, self._window(rule, s, track["windows"][s])) for s in starts]
        episodes, _ = _run(rule, key, track["carry"], windows)
        emitted = dict(track["emitted"])
        for alert_id, episode in episodes.items():
            previous = emitted.get(alert_id)
            states: list[tuple[str, dict[str, Any], str]] = []
            if previous is None:
                states.append(("open", episode["first"], ""))
                if episode["status"] == "resolved" or episode["last"] != episode["first"]:
                    states.append((episode["status"] if episode["status"] == "resolved" else "update", episode["last"], ""))
            elif (previous[0] == "resolved") != (episode["status"] == "resolved") or previous[3] != episode["last"]:
                states.append(("resolved" if episode["status"] == "resolved" else "update", episode["last"], ""))
            for status, summary, note in states:
                alert = self._alert(key, rule, alert_id, status, summary, emitted.get(alert_id), note)
                emitted[alert_id] = (status, alert.revision, alert.fired_at, summary)
                alerts.append(alert)
                if status == "open" and rule.retrain:
                    requests.append(_request(alert, episode["evidence"]))
        for alert_id, previous in list(emitted.items()):
            if alert_id not in episodes and previous[0] != "resolved":
                alert = self._alert(key, rule, alert_id, "resolved", previous[3], previous, _WITHDRAWN)
                emitted[alert_id] = ("resolved", alert.revision, alert.fired_at, previous[3])
                alerts.append(alert)
        horizon = starts[-1] - self._retention(spec, rule) if starts else None
        old = [(s, w) for s, w in windows if horizon is not None and s < horizon]
        if old:
            compacted, carry = _run(rule, key, track["carry"], old)
            for alert_id, episode in compacted.items():
                if episode["status"] == "resolved":
                    emitted.pop(alert_id, None)
            track["carry"] = carry
            track["floor"] = old[-1][0] + 1
            for s, _ in old:
                del track["windows"][s]
        track["emitted"] = emitted
        # What an alert of this track needs once its rule has left the spec (see retire).
        track["facts"] = (rule.severity, rule.watched, rule.on, rule.condition.clear.value, rule.retrain)
        self.state[key] = track

    @staticmethod
    def _retention(spec: ModelSpec, rule: AlertRule) -> int:
        """How long (event time, behind the newest window) a window's results may still change."""
        revisable = rule.on == "metric" or rule.feature in _LABEL_TARGETS
        return spec.window_ms + spec.allowed_lateness_ms + (spec.label_ttl_ms if revisable else spec.window_ms)

    def _window(self, rule: AlertRule, start: int, items: dict[Any, tuple[Any, ...]]) -> tuple[Any, ...] | None:
        """(end, fires, clears, summary) of one window, or ``None`` when nothing in it is eligible."""
        condition = rule.condition
        assert condition is not None and condition.clear is not None
        evaluated = []
        if rule.on == "metric":
            for segment, (_, end, value, p, _, _, n, coverage) in sorted(items.items()):
                if n < rule.min_samples or coverage < rule.min_label_coverage or not _finite(value):  # type: ignore[operator]
                    continue
                gate = rule.p_value is None or (_finite(p) and p <= rule.p_value)
                evaluated.append((segment, end, value, condition.fire.met(value) and gate, condition.clear.met(value),
                                  p, None, None, n))
        else:
            features = sorted({feature for feature, _ in items})
            for feature in features:
                main = items.get((feature, rule.test))
                if main is None:
                    continue
                _, end, value, p, p_adj, family, n = main
                if n < rule.min_samples or not _finite(value):  # type: ignore[operator]
                    continue
                if p is None:
                    significance = next((items[(feature, t)] for t in HYPOTHESIS_TESTS.values() if (feature, t) in items), None)
                    if significance is not None:
                        _, _, _, p, p_adj, family, _ = significance
                gate = rule.p_value is None or (_finite(p_adj) and p_adj <= rule.p_value)
                if rule.effect is not None:
                    effect = items.get((feature, rule.effect.test))
                    gate = gate and effect is not None and effect[2] >= rule.effect.min
                evaluated.append((feature, end, value, condition.fire.met(value) and gate, condition.clear.met(value),
                                  p, p_adj, family, n))
        if not evaluated:
            return None
        upward = condition.fire.op in (">", ">=")
        firing = [e for e in evaluated if e[3]]
        pool = firing or evaluated
        worst = max(pool, key=lambda e: (e[2] if upward else -e[2], e[0]))
        summary = {
            "start": start, "end": worst[1], "subject": worst[0], "value": worst[2], "p_value": worst[5],
            "p_adjusted": worst[6], "family": worst[7], "n": worst[8],
            "firing": tuple((e[0], e[2]) for e in firing),
        }
        return worst[1], bool(firing), all(e[4] for e in evaluated), summary

    def _alert(
        self, key: tuple[Any, ...], rule: AlertRule, alert_id: str, status: str, summary: dict[str, Any],
        previous: tuple[Any, ...] | None, note: str,
    ) -> Alert:
        _, model, version, name, _ = key
        condition = rule.condition
        assert condition is not None and condition.clear is not None
        threshold = condition.clear if status == "resolved" else condition.fire
        revision = 0 if previous is None else previous[1] + 1
        fired_at = summary["end"] if previous is None else max(summary["end"], previous[2] + 1)
        drift = rule.on == "drift"
        return Alert(
            alert_id=alert_id, model=model, version=version, rule=name, severity=rule.severity,
            status=status,  # type: ignore[arg-type]
            window_start=summary["start"], window_end=summary["end"], metric=rule.watched, value=summary["value"],
            threshold=threshold.value, p_value=summary["p_value"], n=summary["n"],
            message=_message(rule, status, summary, note), fired_at=fired_at,
            feature=summary["subject"] if drift else "", segment="" if drift else summary["subject"],
            p_adjusted=summary["p_adjusted"], family_size=summary["family"], revision=revision, retrain=rule.retrain,
        )


def _new_track(emitted: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    """A track with no windows, holding the last states ``emitted`` of its alerts."""
    return {"windows": {}, "carry": (None, (), None), "emitted": emitted, "floor": None, "facts": None}


def _family_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    group = "label" if row["target"] in _LABEL_TARGETS else "inputs"
    return row["model"], row["version"], row["window_start"], group, row["revision"]


def _run(
    rule: AlertRule, key: tuple[Any, ...], carry: tuple[Any, ...], windows: list[tuple[int, tuple[Any, ...] | None]]
) -> tuple[dict[str, dict[str, Any]], tuple[Any, ...]]:
    """Replay the lifecycle from ``carry`` over windows in event-time order.

    Returns the episodes (alert id -> status, first and last summary, evidence windows) and the
    carry after the last window: (open episode or None, current run of firing windows,
    cool-down end or None).
    """
    _, model, version, name, subject = key
    current, streak, cool = carry
    episodes: dict[str, dict[str, Any]] = {}
    if current is not None:
        current = dict(current)
        episodes[current["alert_id"]] = current
    for start, window in windows:
        if window is None:
            continue
        end, fires, clears, summary = window
        if current is not None:
            current["last"] = summary
            if clears:
                current["status"] = "resolved"
                cool = end + rule.cooldown_ms if rule.cooldown_ms else None
                current, streak = None, ()
            continue
        streak = (streak + ((start, end),))[-rule.for_windows:] if fires else ()
        if len(streak) == rule.for_windows and (cool is None or start >= cool):
            alert_id = stable_id(model, version, name, subject, start)
            current = {"alert_id": alert_id, "status": "open", "first": summary, "last": summary, "evidence": streak}
            episodes[alert_id] = current
            streak = ()
    return episodes, (current, streak, cool)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _message(rule: AlertRule, status: str, summary: dict[str, Any], note: str) -> str:
    assert rule.condition is not None and rule.condition.clear is not None
    where = "feature" if rule.on == "drift" else "segment"
    head = f"{rule.name} {status}: {rule.watched} {_fmt(summary['value'])} on {where} {summary['subject']!r}"
    if status == "resolved":
        head += f" (clear {rule.condition.clear})"
    else:
        head += f" (fire {rule.condition.fire})"
    parts = [head]
    if rule.on == "drift" and summary["p_adjusted"] is not None:
        parts.append(f"BH-adjusted p {_fmt(summary['p_adjusted'])} over {summary['family']} tests")
    elif summary["p_value"] is not None:
        parts.append(f"p {_fmt(summary['p_value'])}")
    parts.append(f"n={summary['n']}")
    if len(summary["firing"]) > 1:
        parts.append("firing: " + ", ".join(f"{s}={_fmt(v)}" for s, v in summary["firing"]))
    if note:
        parts.append(note)
    return "; ".join(parts)


def _retired(
    key: tuple[Any, ...], facts: tuple[Any, ...] | None, alert_id: str, revision: int, fired_at: int,
    summary: dict[str, Any],
) -> Alert:
    """The resolved state of an open alert whose rule left the spec (see :meth:`AlertEngine.retire`)."""
    _, model, version, name, _ = key
    # A track last settled before facts were kept: drift summaries carry their test family.
    severity, watched, on, threshold, retrain = facts or (
        "warning", "", "drift" if summary["family"] is not None else "metric", None, False)
    drift = on == "drift"
    where = "feature" if drift else "segment"
    return Alert(
        alert_id=alert_id, model=model, version=version, rule=name, severity=severity, status="resolved",
        window_start=summary["start"], window_end=summary["end"], metric=watched, value=summary["value"],
        threshold=threshold, p_value=summary["p_value"], n=summary["n"],
        message=f"{name} resolved: {watched} {_fmt(summary['value'])} on {where} {summary['subject']!r}; {_RETIRED}",
        fired_at=fired_at + 1, feature=summary["subject"] if drift else "", segment="" if drift else summary["subject"],
        p_adjusted=summary["p_adjusted"], family_size=summary["family"], revision=revision + 1, retrain=retrain,
    )


def _request(alert: Alert, evidence: tuple[tuple[int, int], ...]) -> RetrainRequest:
    return RetrainRequest(
        request_id=stable_id("retrain", alert.alert_id), alert_id=alert.alert_id, model=alert.model,
        version=alert.version, rule=alert.rule, metric=alert.metric, feature=alert.feature, segment=alert.segment,
        value=alert.value, threshold=alert.threshold, windows=[[s, e] for s, e in evidence],
        data_from=evidence[0][0], data_to=evidence[-1][1], message=f"retrain: {alert.message}",
        requested_at=alert.fired_at,
    )
