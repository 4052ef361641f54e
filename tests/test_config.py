"""The model spec: a wrong spec fails at start naming the file, the field path and the expectation."""

from __future__ import annotations

import copy

import pytest

from driftline.config import SpecError, load_spec, parse_duration, parse_spec

GOOD = {
    "model": "credit",
    "task": "binary",
    "features": [{"name": "income", "kind": "numeric"}, {"name": "region", "kind": "categorical"}],
    "reference": {"path": "ref.parquet"},
    "window": "1d",
    "allowed_lateness": "1h",
    "label_ttl": "90d",
    "segments": ["region"],
    "drift": {"fdr": 0.05, "thresholds": {"psi": 0.25}},
    "metrics": [{"name": "roc_auc", "min": 0.7}],
    "cost_matrix": {"tp": 0, "fp": -50, "tn": 10, "fn": -500},
    "protected_attribute": "region",
}


def with_change(path, value):
    spec = copy.deepcopy(GOOD)
    *parents, leaf = path
    node = spec
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[leaf]
    else:
        node[leaf] = value
    return spec


def test_good_spec_parses_with_defaults():
    spec = parse_spec(GOOD)
    assert spec.window_ms == 86_400_000 and spec.label_ttl_ms == 90 * 86_400_000
    assert spec.drift.thresholds["psi"] == 0.25 and spec.drift.thresholds["ks"] == 0.1
    assert spec.reference.format == "parquet"
    assert spec.numeric_features == ["income"] and spec.categorical_features == ["region"]


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        (("task",), "ranking", "task", "expected one of binary, multiclass, regression"),
        (("model",), KeyError, "model", "required field is missing"),
        (("features", 1, "kind"), "text", "features[1].kind", "expected one of numeric, categorical"),
        (("features", 0, "name"), 3, "features[0].name", "Expected `str`, got `int`"),
        (("window",), "soon", "window", "window must be a duration"),
        (("label_ttl",), "-3d", "label_ttl", "label_ttl must be a duration"),
        (("segments",), ["income"], "segments[0]", "expected a categorical feature"),
        (("segments",), ["nope"], "segments[0]", "expected a categorical feature"),
        (("protected_attribute",), "income", "protected_attribute", "categorical feature"),
        (("metrics", 0, "name"), "r2", "metrics[0].name", "expected one of accuracy"),
        (("metrics", 0), {"name": "roc_auc"}, "metrics[0]", "needs min or max"),
        (("limits",), {"max_event_bytes": 10}, "limits.max_event_bytes", "max_event_bytes must be >= 64"),
        (("drift", "fdr"), 2.0, "drift.fdr", "fdr must be in (0, 1)"),
        (("drift", "numeric_tests"), ["ks", "t-test"], "drift.numeric_tests[1]", "Invalid enum value 't-test'"),
        (("drift", "bins"), 1, "drift.bins", "bins must be >= 2"),
        (("windw",), "1h", "windw", "unknown field"),
        (("positive_label",), "yes", "positive_label", "expected one of [0, 1]"),
        (("reference", "path"), "ref.xlsx", "reference.path", "must end in .csv or .parquet"),
        (("model",), "credit'; DROP TABLE x", "model", "model must be 1-128 characters"),
        (("allowed_lateness",), "365d", "allowed_lateness", "must not exceed label_ttl"),
        (("label_ttl",), "1d", "label_ttl", "must be at least window + allowed_lateness"),
        (("features", 0, "name"), "score", "features[0].name", "reserved for the model's output"),
    ],
)
def test_wrong_spec_names_field(path, value, field, words):
    with pytest.raises(SpecError) as info:
        parse_spec(with_change(path, value), "specs/credit.yaml")
    error = info.value
    assert error.path == field
    assert words in error.message
    assert str(error).startswith("specs/credit.yaml: ")


def test_duplicate_features_rejected():
    spec = with_change(("features",), [{"name": "a", "kind": "numeric"}, {"name": "a", "kind": "numeric"}])
    spec["segments"], spec["protected_attribute"] = [], None
    with pytest.raises(SpecError, match=r"features\[1\].name: duplicate feature 'a'"):
        parse_spec(spec)


def test_multiclass_needs_classes():
    spec = {**GOOD, "task": "multiclass", "cost_matrix": None, "metrics": []}
    with pytest.raises(SpecError, match="classes: multiclass needs"):
        parse_spec(spec)
    spec["classes"] = ["a", "b", "c"]
    assert parse_spec(spec).class_labels == ["a", "b", "c"]


def test_yaml_errors_and_non_mapping():
    with pytest.raises(SpecError, match="not valid YAML"):
        parse_spec("model: [unclosed")
    with pytest.raises(SpecError, match="expected a mapping"):
        parse_spec("- a\n- b\n")


def test_load_spec_resolves_reference_relative_to_file(tmp_path):
    (tmp_path / "specs").mkdir()
    path = tmp_path / "specs" / "credit.yaml"
    path.write_text("model: credit\ntask: regression\nfeatures: [{name: x, kind: numeric}]\nreference: {path: ../ref.csv}\n")
    assert load_spec(path).reference.path == str(tmp_path / "ref.csv")
    with pytest.raises(SpecError, match="cannot read the spec"):
        load_spec(tmp_path / "missing.yaml")


@pytest.mark.parametrize(("text", "ms"), [("500ms", 500), ("90s", 90_000), ("15m", 900_000), ("2w", 1_209_600_000), (1000, 1000)])
def test_durations(text, ms):
    assert parse_duration(text, "window") == ms


# --- alert rules ------------------------------------------------------------------------------

HYST_RULE = {"name": "auc_floor", "on": "metric", "metric": "roc_auc",
             "condition": {"fire": {"op": "<", "value": 0.65}, "clear": {"op": ">=", "value": 0.68}}}


def with_alerts(*rules):
    return {**copy.deepcopy(GOOD), "alerts": [copy.deepcopy(r) for r in rules]}


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        ({**HYST_RULE, "metric": "mae"}, "alerts[0].metric", "expected one of accuracy, precision"),
        ({"name": "d", "on": "drift", "test": "t-test"}, "alerts[0].test", "expected one of ks, psi"),
        ({"name": "d", "on": "drift", "test": "wasserstein", "feature": "region"}, "alerts[0].test",
         "'wasserstein' is not run on categorical feature 'region'"),
        ({"name": "d", "on": "drift", "test": "domain_auc"}, "alerts[0].test", "expected a drift test this spec runs"),
        ({**HYST_RULE, "condition": {"fire": {"op": "<", "value": 0.65}, "clear": {"op": ">=", "value": 0.6}}},
         "alerts[0].condition.clear", "clear must be on the other side of fire"),
        ({**HYST_RULE, "condition": {"fire": {"op": "<", "value": 0.65}, "clear": {"op": "<", "value": 0.7}}},
         "alerts[0].condition.clear", "needs clear > or >= a value at least 0.65"),
        ({**HYST_RULE, "condition": {"fire": {"op": "<=", "value": 0.65}, "clear": {"op": ">=", "value": 0.65}}},
         "alerts[0].condition.clear", "without overlapping"),
        ({**HYST_RULE, "condition": {"fire": {"op": "=<", "value": 0.65}}}, "alerts[0].condition.fire.op",
         "expected one of <, <=, >, >="),
        ({**HYST_RULE, "condition": {"fire": {"op": "<", "value": float("inf")}}}, "alerts[0].condition.fire.value",
         "must be a finite number"),
        ({**HYST_RULE, "cooldown": "-2d"}, "alerts[0].cooldown", "cooldown must be a duration"),
        ({**HYST_RULE, "cooldown": 0}, "alerts[0].cooldown", "positive duration"),
        ({**HYST_RULE, "severity": "panic"}, "alerts[0].severity", "expected one of info, warning, critical"),
        ({**HYST_RULE, "for_windows": 0}, "alerts[0].for_windows", "for_windows must be an int in [1, 1000]"),
        ({**HYST_RULE, "min_samples": -5}, "alerts[0].min_samples", "min_samples must be >= 1"),
        ({**HYST_RULE, "min_label_coverage": 1.5}, "alerts[0].min_label_coverage", "must be in [0, 1]"),
        ({**HYST_RULE, "p_value": 0}, "alerts[0].p_value", "p_value must be in (0, 1)"),
        ({**HYST_RULE, "name": "x'; DROP TABLE alerts --"}, "alerts[0].name", "name must be 1-128 characters"),
        ({**HYST_RULE, "name": "a" * 500}, "alerts[0].name", "..."),
        ({**HYST_RULE, "segment": "region=north\x00"}, "alerts[0].segment", "printable characters"),
        ({**HYST_RULE, "segment": "colour=red"}, "alerts[0].segment", "'all', '*' or '<segment>=<value>'"),
        ({**HYST_RULE, "feature": "income"}, "alerts[0].feature", "feature must not be set for a metric rule"),
        ({k: v for k, v in HYST_RULE.items() if k != "condition"}, "alerts[0].condition", "condition must be set"),
        ({"name": "d", "on": "drift", "test": "psi", "feature": "nope"}, "alerts[0].feature", "expected one of *, income"),
        ({"name": "d", "on": "drift", "metric": "psi"}, "alerts[0].test", "test must be set for a drift rule"),
        ({"name": "d", "on": "drift", "test": "psi", "segment": "all"}, "alerts[0].segment", "must not be set for a drift rule"),
        ({"name": "d", "on": "drift", "test": "psi", "min_label_coverage": 0.5}, "alerts[0].min_label_coverage",
         "drift needs no labels"),
        ({"name": "d", "on": "drift", "test": "ks", "effect": {"test": "js", "min": 0.1}}, "alerts[0].effect.test",
         "'js' is not among drift.numeric_tests"),
        ({"name": "d", "on": "drift", "test": "ks", "effect": {"test": "psi", "min": -1}}, "alerts[0].effect.min",
         "min must be a finite number >= 0"),
        ({"name": "d", "on": "alarm", "test": "ks"}, "alerts[0].on", "expected one of drift, metric"),
        ({"name": "d", "on": "drift", "test": "ks", "retrain": "yes"}, "alerts[0].retrain", "Expected `bool`"),
        ({"name": "d", "on": "drift", "test": "ks", "colour": 1}, "alerts[0].colour", "unknown field"),
        ({**HYST_RULE, "metric": "disparate_impact", "segment": "all"}, "alerts[0].segment", "'region=*'"),
    ],
)
def test_hostile_alert_rules_fail_at_start_naming_the_field(rule, field, words):
    with pytest.raises(SpecError) as info:
        parse_spec(with_alerts(rule), "specs/credit.yaml")
    assert info.value.path == field
    assert words in info.value.message
    assert len(str(info.value)) < 400


def test_duplicate_alert_rule_names_rejected():
    with pytest.raises(SpecError, match=r"alerts\[1\].name: duplicate alert rule name 'auc_floor'"):
        parse_spec(with_alerts(HYST_RULE, {**HYST_RULE, "metric": "accuracy"}))


def test_p_value_on_an_effect_only_test_needs_the_significance_test():
    spec = with_alerts({"name": "d", "on": "drift", "test": "psi", "feature": "income", "p_value": 0.01})
    spec["drift"]["numeric_tests"] = ["psi", "wasserstein"]
    with pytest.raises(SpecError, match=r"alerts\[0\].p_value: psi has no p-value, so p_value applies to the feature's ks"):
        parse_spec(spec)


def test_alert_rules_from_yaml_with_a_bare_on_key_and_defaults_resolved():
    spec = parse_spec(
        "model: credit\ntask: binary\nfeatures: [{name: income, kind: numeric}, {name: region, kind: categorical}]\n"
        "reference: {path: r.csv}\nsegments: [region]\n"
        "alerts:\n"
        "  - name: income_shift\n    on: drift\n    test: ks\n    feature: income\n    p_value: 0.01\n"
        "    effect: {test: psi, min: 0.2}\n    for_windows: 2\n    severity: critical\n    cooldown: 2d\n    retrain: true\n"
        "  - {name: north_auc, on: metric, metric: roc_auc, segment: region=north, min_label_coverage: 0.3,\n"
        "     condition: {fire: {op: '<', value: 0.65}, clear: {op: '>=', value: 0.68}}}\n"
    )
    drift, metric = spec.alert_rules
    assert (drift.on, drift.feature, drift.for_windows, drift.cooldown_ms, drift.retrain) == ("drift", "income", 2, 2 * 86_400_000, True)
    assert str(drift.condition.fire) == ">= 0.1" and str(drift.condition.clear) == "< 0.1"  # from drift.thresholds.ks
    assert drift.min_samples == 1000
    assert (metric.segment, metric.min_samples, metric.min_label_coverage) == ("region=north", 100, 0.3)


def test_default_alert_rules_when_alerts_is_omitted_and_none_when_empty():
    spec = parse_spec(GOOD)
    rules = {r.name: r for r in spec.alert_rules}
    assert list(rules) == ["input_drift", "roc_auc_min"]
    drift = rules["input_drift"]
    assert (drift.test, drift.feature, drift.p_value, str(drift.condition.fire), str(drift.condition.clear)) == (
        "psi", "*", 0.05, ">= 0.25", "< 0.125")
    assert str(rules["roc_auc_min"].condition.fire) == "< 0.7" and rules["roc_auc_min"].segment == "all"
    assert parse_spec({**GOOD, "alerts": []}).alert_rules == []
