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
