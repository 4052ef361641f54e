"""Domain-classifier drift: can a classifier tell the reference from the current window?

A gradient-boosted classifier (scikit-learn's ``HistGradientBoostingClassifier``) is trained to
separate a bounded random sample of reference rows from a sample of current rows. The
cross-validated ROC AUC is the drift score: 0.5 means the samples are indistinguishable, 1.0
means they are fully separable. The features responsible are ranked by permutation
importance: the mean drop of held-out AUC when one feature's column is shuffled.

This is an approximate, sampled measure by design: at most ``max_rows`` rows are drawn from
each side (uniformly, without replacement), and the AUC's fold-to-fold spread is reported as
``auc_std``. Numeric columns keep their missing values (the model handles NaN natively);
other columns are ordinal-encoded on the pooled data (a category seen only in the current
window gets its own code) and passed as categorical features, missing categories as missing.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> ref = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
>>> cur = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(3.0, 1.0, size=400)})
>>> r = domain_classifier(ref, cur, cv=3)
>>> r.auc > 0.9, next(iter(r.importances))
(True, 'b')
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from driftline.monitors.results import DomainClassifierResult

__all__ = ["domain_classifier"]


def _encode(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[np.ndarray, list[bool]]:
    both = pd.concat([reference, current], ignore_index=True)
    columns, categorical = [], []
    for name in both.columns:
        col = both[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            columns.append(col.to_numpy(dtype=np.float64, na_value=np.nan))
            categorical.append(False)
            continue
        codes, uniques = pd.factorize(col.astype(object).where(col.notna(), None).map(
            lambda v: None if v is None else str(v)))
        encoded = codes.astype(np.float64)
        encoded[codes < 0] = np.nan
        columns.append(encoded)
        # HistGradientBoosting takes at most 255 categories; beyond that the codes act as ordinals.
        categorical.append(len(uniques) < 255)
    return np.column_stack(columns), categorical


def domain_classifier(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    max_rows: int = 5000,
    cv: int = 5,
    random_state: int = 0,
) -> DomainClassifierResult:
    """Cross-validated ROC AUC of a classifier separating ``reference`` from ``current``.

    Parameters
    ----------
    reference, current
        DataFrames with the same columns (the features to compare).
    max_rows
        At most this many rows are sampled from each side.
    cv
        Number of stratified folds (>= 2).
    random_state
        Seed for sampling, fold assignment, the model and the permutations.

    Returns
    -------
    DomainClassifierResult
    """
    if not isinstance(reference, pd.DataFrame) or not isinstance(current, pd.DataFrame):
        raise TypeError("reference and current must be pandas DataFrames")
    if list(reference.columns) != list(current.columns):
        raise ValueError(
            f"current must have the reference's columns {list(reference.columns)}, got {list(current.columns)}"
        )
    if reference.shape[1] == 0:
        raise ValueError("reference must have at least one column")
    if not isinstance(max_rows, int) or max_rows < 2:
        raise ValueError(f"max_rows must be an int >= 2, got {max_rows!r}")
    if not isinstance(cv, int) or cv < 2:
        raise ValueError(f"cv must be an int >= 2, got {cv!r}")
    if min(len(reference), len(current)) < cv:
        raise ValueError(
            f"reference and current need at least cv={cv} rows each, got {len(reference)} and {len(current)}"
        )
    rng = np.random.default_rng(random_state)
    ref = reference.iloc[np.sort(rng.choice(len(reference), min(max_rows, len(reference)), replace=False))]
    cur = current.iloc[np.sort(rng.choice(len(current), min(max_rows, len(current)), replace=False))]
    x, categorical = _encode(ref, cur)
    y = np.r_[np.zeros(len(ref), dtype=int), np.ones(len(cur), dtype=int)]
    # scikit-learn is imported here, not at module level: it costs seconds of start-up that the
    # CLI and the stream workers should not pay unless a domain classifier runs.
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=random_state)
    aucs, drops = [], np.zeros(x.shape[1])
    # One OpenMP thread: a monitoring worker shares its cores, and spin-waiting threads made
    # the fits about 6x slower on a busy 2-core machine.
    with threadpool_limits(limits=1, user_api="openmp"):
        for train, test in folds.split(x, y):
            aucs.append(_fold(x, y, train, test, categorical, random_state, rng, drops))
    drops /= cv
    ranked = sorted(zip(reference.columns, drops.tolist()), key=lambda kv: -kv[1])
    return DomainClassifierResult(
        auc=float(np.mean(aucs)),
        auc_std=float(np.std(aucs)),
        importances={str(k): float(v) for k, v in ranked},
        n_reference=len(ref),
        n_current=len(cur),
    )


def _fold(
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    categorical: list[bool],
    random_state: int,
    rng: np.random.Generator,
    drops: np.ndarray,
) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    model = HistGradientBoostingClassifier(
        categorical_features=np.array(categorical), random_state=random_state, max_iter=100
    )
    model.fit(x[train], y[train])
    xt, yt = x[test], y[test]
    auc = roc_auc_score(yt, model.predict_proba(xt)[:, 1])
    for j in range(x.shape[1]):
        shuffled = xt.copy()
        shuffled[:, j] = rng.permutation(shuffled[:, j])
        drops[j] += auc - roc_auc_score(yt, model.predict_proba(shuffled)[:, 1])
    return float(auc)
