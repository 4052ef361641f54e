"""A credit-scoring model in production: the stream behind ``driftline demo``.

A lender scores loan applications with a scikit-learn model trained on last year's book. The
stream of applications runs for about four weeks of event time. Partway through, a marketing
partnership brings in a new population (covariate shift); later a recession changes who
defaults (concept drift). Outcomes arrive days after the decision, and only for part of the
applications: a declined applicant never takes the loan, so it has no outcome, except for a small
random audit sample of declines that is approved on purpose to keep the evaluation unbiased.

Everything is generated with vectorised numpy from one seed; nothing here does I/O except
:meth:`CreditScenario.write_event_files`.

Ground truth
------------
The probability of default is a logistic function of the features (debt-to-income, credit
utilisation, past delinquencies, income, age, tenure, employment type, housing, loan size,
channel, region), with a base rate of about 10 % in the reference population.

- Covariate shift (from ``covariate_shift_at``, a fraction of the stream): 45 % of applicants
  come through the ``partner_app`` channel; they are younger, earn less, use more of their credit
  lines, carry less other debt, have fewer past delinquencies, are more often contractors and
  live more often in the capital. Loan amounts do not change. The default function is
  unchanged, so the model ranks about as well (ROC AUC within about 0.02); its accuracy dips
  slightly (about 0.02) because the new population defaults a little more often.
- Concept drift (from ``concept_drift_at``): debt-to-income weighs more than twice as much;
  contractors, the self-employed, mortgage holders, larger loans and two regions (north, coastal)
  are hit; revolving utilisation and past delinquencies say less; and the base rate rises from about 12-15 % to about 22 %. The inputs
  do not change further; on the labeled rows the model's ROC AUC drops by 0.1 to 0.14, its
  accuracy by about 0.12 and its log loss rises by about 0.25.

Label delays
------------
Real default outcomes take 30 to 90 days; the demo compresses them so that four weeks of event
time with one-day windows show both fully and partially labeled windows:

- ``manual_review`` (applications in the review band): hours (log-normal, median 6 h, >= 1 h);
- ``chargeback`` (30 % of approved defaulters, first-payment fraud): 1 to 5 days;
- ``collections`` (every other approved application, default or not): 2 days + Gamma(3, 1.5 days),
  at most 14 days;
- ``random_audit`` (the audited declines): like ``collections``.

Exactly ``round(label_coverage * n_events)`` predictions receive a label (when that many are
not declined or audited); a label whose arrival falls after the last prediction is not emitted,
so the last windows of the stream are only partially labeled.

Examples
--------
>>> sc = CreditScenario(n_reference=500, n_events=3_000, n_train=2_000, rate_per_s=0.002)
>>> arrival, kind, event = next(iter(sc.events()))
>>> kind, event["model"], event["version"], event["schema_version"]
('prediction', 'credit', 'v1', 1)
>>> sorted(event["features"]) == sorted(sc.feature_names)
True
>>> ref = sc.reference_frame()
>>> len(ref), {"prediction", "score", "label"} <= set(ref.columns)
(500, True)
>>> sc.spec_dict("reference.parquet")["protected_attribute"]
'age_band'

"""

from __future__ import annotations

import functools
import numbers
import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pandas as pd
import yaml
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

__all__ = ["CreditScenario", "START_MS"]

#: 2026-01-05T00:00:00Z in milliseconds since the epoch.
START_MS = 1_767_571_200_000

_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000

NUMERIC = (
    "age",
    "income",
    "debt_to_income",
    "credit_utilization",
    "n_open_accounts",
    "n_delinquencies",
    "months_employed",
    "loan_amount",
)
CATEGORICAL = ("region", "employment_type", "home_ownership", "channel", "age_band", "has_mortgage")
LEVELS: dict[str, tuple[Any, ...]] = {
    "region": ("capital", "north", "south", "east", "west", "central", "coastal"),
    "employment_type": ("salaried", "self_employed", "contractor", "retired"),
    "home_ownership": ("owner", "renter", "family"),
    "channel": ("branch", "web", "mobile_app", "broker", "partner_app"),
    "age_band": ("18-24", "25-34", "35-49", "50-64", "65+"),
    "has_mortgage": (False, True),
}
_INT_COLUMNS = ("age", "income", "n_open_accounts", "n_delinquencies", "loan_amount")
_NULLABLE = {"months_employed": 0.02, "debt_to_income": 0.005}

_REGION_P = {
    "base": (0.22, 0.16, 0.15, 0.13, 0.13, 0.12, 0.09),
    "new": (0.42, 0.08, 0.18, 0.10, 0.10, 0.07, 0.05),
}
_CHANNEL_P = {
    "base": (0.25, 0.40, 0.22, 0.11, 0.02),
    "new": (0.0, 0.0, 0.12, 0.0, 0.88),
}
_NEW_SHARE = 0.45
_SOURCES = ("collections", "chargeback", "manual_review", "random_audit")


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_fraction(name: str, value: Any, *, open_low: bool = False, open_high: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok:
        ok = (value > 0 if open_low else value >= 0) and (value < 1 if open_high else value <= 1)
    if not ok:
        interval = f"{'(' if open_low else '['}0, 1{')' if open_high else ']'}"
        raise ValueError(f"{name} must be a float in {interval}, got {value!r}")
    return float(value)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _pick(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    """Row-wise categorical draw from an (n, k) probability matrix; returns level indices."""
    cum = np.cumsum(p, axis=1)
    u = rng.random(len(p)) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), p.shape[1] - 1)


def _applicants(rng: np.random.Generator, is_new: np.ndarray) -> dict[str, np.ndarray]:
    """Draw applicant features; ``is_new`` marks the partner-channel population."""
    n = len(is_new)
    new = is_new.astype(float)
    age = np.where(is_new, 18 + rng.gamma(4.0, 3.2, n), 18 + rng.gamma(6.0, 4.2, n))
    age = np.clip(np.floor(age), 18, 85)

    region = _pick(rng, np.where(is_new[:, None], _REGION_P["new"], _REGION_P["base"]))
    channel = _pick(rng, np.where(is_new[:, None], _CHANNEL_P["new"], _CHANNEL_P["base"]))

    retired = rng.random(n) < _sigmoid((age - 65.0) / 2.0)
    working_p = np.where(is_new[:, None], (0.68, 0.12, 0.20), (0.72, 0.14, 0.14))
    employment = np.where(retired, 3, _pick(rng, working_p))

    tenure = np.minimum(rng.gamma(1.6, 38.0, n), (age - 17.0) * 12.0)
    months_employed = np.where(employment == 3, 0.0, np.floor(tenure))

    log_income = (
        np.log(40_000)
        + 0.02 * (np.minimum(age, 55) - 40)
        - 0.30 * (employment == 3)
        + 0.10 * (employment == 1)
        - 0.05 * (employment == 2)
        + 0.12 * (region == 0)
        - 0.08 * new
        + rng.normal(0.0, 0.42, n)
    )
    income = np.clip(np.round(np.exp(log_income), -2), 6_000, 600_000)
    li = np.log(income / 40_000)

    u_owner = -1.2 + 0.08 * (age - 35) + 1.0 * li
    u_family = -0.4 - 0.25 * (age - 22)
    housing = _pick(rng, np.exp(np.column_stack([u_owner, np.zeros(n), u_family])))
    mortgage_p = np.where(housing == 0, np.where(age < 65, 0.72, 0.20), 0.02)
    has_mortgage = rng.random(n) < mortgage_p

    n_open = np.minimum(rng.poisson(1.2 + 0.06 * (age - 18) + 0.4 * np.maximum(li, 0)), 30)

    util_mean = _sigmoid(-0.7 - 0.7 * li - 0.02 * (age - 40) + 0.25 * new)
    utilization = np.round(rng.beta(util_mean * 4.0, (1 - util_mean) * 4.0), 4)

    n_delinq = rng.poisson(np.where(is_new, 0.5, 1.0) * (0.08 + 0.7 * utilization**2))

    auto = rng.random(n) < 0.3
    loan = np.where(auto, rng.lognormal(np.log(18_000), 0.4, n), rng.lognormal(np.log(8_000), 0.6, n))
    loan_amount = np.clip(np.round(loan, -2), 500, 75_000)

    dti = rng.gamma(4.0, np.where(is_new, 0.04, 0.055)) + 0.12 * has_mortgage + (loan_amount / 36.0) / (income / 12.0)
    dti = np.round(np.clip(dti, 0.0, 2.5), 4)

    band = np.digitize(age, (25, 35, 50, 65))
    return {
        "age": age,
        "income": income,
        "debt_to_income": dti,
        "credit_utilization": utilization,
        "n_open_accounts": n_open.astype(float),
        "n_delinquencies": n_delinq.astype(float),
        "months_employed": months_employed,
        "loan_amount": loan_amount,
        "region": region,
        "employment_type": employment,
        "home_ownership": housing,
        "channel": channel,
        "age_band": band,
        "has_mortgage": has_mortgage.astype(np.int64),
    }


def _mask_missing(rng: np.random.Generator, cols: dict[str, np.ndarray]) -> None:
    n = len(cols["age"])
    for name, rate in _NULLABLE.items():
        cols[name] = np.where(rng.random(n) < rate, np.nan, cols[name])


def _default_logit(cols: dict[str, np.ndarray], drifted: np.ndarray) -> np.ndarray:
    """Ground-truth log-odds of default; ``drifted`` switches on the recession terms."""
    dti = np.nan_to_num(cols["debt_to_income"], nan=0.45) - 0.35
    util = cols["credit_utilization"] - 0.35
    li = np.log(cols["income"] / 40_000)
    tenure = cols["months_employed"]
    emp, region = cols["employment_type"], cols["region"]
    mortgage = cols["has_mortgage"]
    before = (
        -2.55
        + 2.4 * dti
        + 2.2 * util
        + 0.45 * cols["n_delinquencies"]
        - 0.55 * li
        - 0.022 * (cols["age"] - 40)
        - 0.005 * (np.nan_to_num(np.minimum(tenure, 120), nan=0.0) - 60)
        + 0.30 * np.isnan(tenure)
        + 0.25 * (emp == 1)
        + 0.35 * (emp == 2)
        + 0.10 * (emp == 3)
        - 0.20 * (cols["home_ownership"] == 0)
        + 0.15 * (cols["home_ownership"] == 1)
        + 0.15 * np.log(cols["loan_amount"] / 10_000)
        + 0.15 * (cols["channel"] == 3)
        + np.array([0.0, 0.1, -0.05, 0.0, -0.05, 0.05, 0.1])[region]
    )
    recession = (
        0.20
        + 3.0 * dti
        - 1.4 * util
        - 0.30 * cols["n_delinquencies"]
        + 0.30 * li
        + 0.025 * (cols["age"] - 40)
        + 1.10 * (emp == 2)
        + 0.85 * (emp == 1)
        + 0.75 * mortgage
        + 0.35 * np.log(cols["loan_amount"] / 10_000)
        + np.array([-0.35, 1.1, -0.35, -0.35, -0.35, 0.0, 1.0])[region]
    )
    return before + drifted * recession


class CreditScenario:
    """A credit-scoring model in production, with a covariate shift and a concept drift.

    Parameters
    ----------
    seed
        Seed of every random draw; the same seed gives the same model, reference and events.
    n_reference
        Rows of the reference frame (the model's held-out test set).
    n_events
        Prediction events in the stream.
    n_train
        Rows the model is trained on (drawn separately from the reference).
    start_ms
        Event time of the start of the stream, in ms since the epoch (default 2026-01-05T00:00Z).
    rate_per_s
        Mean application rate; arrivals follow a Poisson process with a daily cycle (busiest in
        the afternoon, quietest at night). The default makes 200,000 events span 29 days.
    covariate_shift_at
        Fraction of the stream from which the partner-channel population arrives (1 = never).
    concept_drift_at
        Fraction of the stream from which the recession's default function applies (1 = never).
    label_coverage
        Fraction of predictions that ever receive a label.
    audit_rate
        Fraction of declined applications approved anyway for evaluation (random audit).
    late_fraction
        Fraction of predictions that reach the bus 1 to 30 minutes after their event time
        (buffered by a scorer host); the others arrive within about a second.
    decision_threshold
        Score at or above which the model predicts default (``prediction`` = 1) and the
        application is declined.
    review_threshold
        Score at or above which a not-declined application goes to manual review.

    Examples
    --------
    >>> sc = CreditScenario(seed=1, n_reference=400, n_events=2_000, n_train=1_500)
    >>> frame = sc.stream_frame()
    >>> len(frame), frame["ts"].is_monotonic_increasing
    (2000, True)
    >>> int(frame["labeled"].sum()) == round(0.7 * 2_000)
    True

    """

    def __init__(
        self,
        seed: int = 7,
        n_reference: int = 10_000,
        n_events: int = 200_000,
        n_train: int = 20_000,
        start_ms: int = START_MS,
        rate_per_s: float = 0.08,
        covariate_shift_at: float = 0.35,
        concept_drift_at: float = 0.65,
        label_coverage: float = 0.7,
        audit_rate: float = 0.1,
        late_fraction: float = 0.002,
        decision_threshold: float = 0.35,
        review_threshold: float = 0.2,
    ) -> None:
        self.seed = _check_int("seed", seed, 0)
        self.n_reference = _check_int("n_reference", n_reference, 100)
        self.n_events = _check_int("n_events", n_events, 1)
        self.n_train = _check_int("n_train", n_train, 500)
        self.start_ms = _check_int("start_ms", start_ms, 0)
        if (
            isinstance(rate_per_s, bool)
            or not isinstance(rate_per_s, numbers.Real)
            or not np.isfinite(rate_per_s)
            or rate_per_s <= 0
        ):
            raise ValueError(f"rate_per_s must be a finite float > 0, got {rate_per_s!r}")
        self.rate_per_s = float(rate_per_s)
        self.covariate_shift_at = _check_fraction("covariate_shift_at", covariate_shift_at)
        self.concept_drift_at = _check_fraction("concept_drift_at", concept_drift_at)
        self.label_coverage = _check_fraction("label_coverage", label_coverage)
        self.audit_rate = _check_fraction("audit_rate", audit_rate)
        self.late_fraction = _check_fraction("late_fraction", late_fraction)
        self.decision_threshold = _check_fraction(
            "decision_threshold", decision_threshold, open_low=True, open_high=True
        )
        if not (
            isinstance(review_threshold, numbers.Real)
            and not isinstance(review_threshold, bool)
            and 0 < review_threshold <= self.decision_threshold
        ):
            raise ValueError(
                f"review_threshold must be a float in (0, decision_threshold={self.decision_threshold}],"
                f" got {review_threshold!r}"
            )
        self.review_threshold = float(review_threshold)
        self.feature_names: tuple[str, ...] = NUMERIC + CATEGORICAL

    def __repr__(self) -> str:
        return (
            f"CreditScenario(seed={self.seed}, n_reference={self.n_reference}, n_events={self.n_events},"
            f" covariate_shift_at={self.covariate_shift_at}, concept_drift_at={self.concept_drift_at},"
            f" label_coverage={self.label_coverage})"
        )

    def _rng(self, stream: int) -> np.random.Generator:
        # Independent child streams: the model and reference do not depend on n_events.
        return np.random.default_rng(np.random.SeedSequence([self.seed, stream]))

    @staticmethod
    def _model_input(cols: dict[str, np.ndarray]) -> np.ndarray:
        return np.column_stack([np.asarray(cols[name], dtype=float) for name in NUMERIC + CATEGORICAL])

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's input for a frame of public feature values (like :meth:`reference_frame`).

        Columns follow :attr:`feature_names`; categorical values become their level codes and
        unknown levels become NaN (the model's missing-value branch).
        """
        out = np.empty((len(frame), len(self.feature_names)))
        for j, name in enumerate(self.feature_names):
            if name in LEVELS:
                codes = pd.Categorical(frame[name], categories=list(LEVELS[name])).codes
                out[:, j] = np.where(codes < 0, np.nan, codes)
            else:
                out[:, j] = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        return out

    @staticmethod
    def _public_frame(cols: dict[str, np.ndarray]) -> pd.DataFrame:
        data: dict[str, Any] = {}
        for name in NUMERIC:
            values = cols[name]
            data[name] = values.astype(np.int64) if name in _INT_COLUMNS else values
        for name in CATEGORICAL:
            data[name] = np.asarray(LEVELS[name], dtype=object)[cols[name]]
        frame = pd.DataFrame(data)
        frame["has_mortgage"] = frame["has_mortgage"].astype(bool)
        return frame

    def _population(self, stream: int, n: int) -> dict[str, np.ndarray]:
        rng = self._rng(stream)
        cols = _applicants(rng, np.zeros(n, dtype=bool))
        _mask_missing(rng, cols)
        cols["label"] = (rng.random(n) < _sigmoid(_default_logit(cols, np.zeros(n)))).astype(np.int64)
        return cols

    @functools.cached_property
    def model(self) -> HistGradientBoostingClassifier:
        """The production model: gradient-boosted trees trained on ``n_train`` applications.

        Its input is :meth:`encode` of a feature frame: columns in :attr:`feature_names` order,
        categorical features as codes into ``LEVELS``.
        """
        cols = self._population(1, self.n_train)
        model = HistGradientBoostingClassifier(
            learning_rate=0.1,
            max_iter=80,
            max_leaf_nodes=8,
            min_samples_leaf=40,
            l2_regularization=1.0,
            categorical_features=list(range(len(NUMERIC), len(NUMERIC) + len(CATEGORICAL))),
            early_stopping=False,
            random_state=self.seed,
        )
        # OpenMP threads spin at barriers: on a busy machine one thread fits this model ~10x faster.
        with threadpool_limits(1, user_api="openmp"):
            return model.fit(self._model_input(cols), cols["label"])

    def _score(self, cols: dict[str, np.ndarray]) -> np.ndarray:
        """Probability of default for feature columns given as level codes (internal layout)."""
        model = self.model
        with threadpool_limits(1, user_api="openmp"):
            return model.predict_proba(self._model_input(cols))[:, 1]

    @functools.cached_property
    def _reference(self) -> pd.DataFrame:
        cols = self._population(2, self.n_reference)
        score = self._score(cols)
        frame = self._public_frame(cols)
        frame["prediction"] = (score >= self.decision_threshold).astype(np.int64)
        frame["score"] = score
        frame["label"] = cols["label"]
        return frame

    def reference_frame(self) -> pd.DataFrame:
        """Held-out test set of the model: features, ``prediction``, ``score``, ``label``."""
        return self._reference.copy()

    def _arrival_times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Event times (ms offsets) of a Poisson process with a daily cycle, by time rescaling.

        The intensity is ``rate * (1 + 0.6 cos(2 pi (t - 14h) / 1d))``; its integral is periodic
        up to a shift of one day, so it is inverted on a one-day grid of ten-second steps.
        """
        amplitude, period = 0.6, 86_400.0
        phase = 2 * np.pi * 14 * 3600 / period
        s = np.cumsum(rng.exponential(1.0 / self.rate_per_s, n))
        grid = np.linspace(0.0, period, 8641)
        warped = grid + amplitude * period / (2 * np.pi) * (
            np.sin(2 * np.pi * grid / period - phase) + np.sin(phase)
        )
        days = np.floor(s / period)
        t = days * period + np.interp(s - days * period, warped, grid)
        return np.round(t * 1000).astype(np.int64)

    @functools.cached_property
    def _stream(self) -> dict[str, np.ndarray]:
        n = self.n_events
        rng = self._rng(3)
        position = np.arange(n) / n
        shifted = position >= self.covariate_shift_at
        drifted = position >= self.concept_drift_at

        ts = self.start_ms + self._arrival_times(rng, n)
        is_new = shifted & (rng.random(n) < _NEW_SHARE)
        cols = _applicants(rng, is_new)
        _mask_missing(rng, cols)
        label = (rng.random(n) < _sigmoid(_default_logit(cols, drifted.astype(float)))).astype(np.int64)

        score = self._score(cols)
        prediction = (score >= self.decision_threshold).astype(np.int64)
        action = np.where(prediction == 1, 1, np.where(score >= self.review_threshold, 2, 0))

        lag = np.round(rng.lognormal(np.log(150.0), 0.5, n)).astype(np.int64)
        late = rng.random(n) < self.late_fraction
        lag += np.where(late, rng.integers(60_000, 1_800_000, n), 0)
        arrival = ts + lag

        declined = action == 1
        audited = declined & (rng.random(n) < self.audit_rate)
        target = int(round(self.label_coverage * n))
        n_audit = int(audited.sum())
        if n_audit > target:
            audited[rng.permutation(np.flatnonzero(audited))[target:]] = False
            n_audit = target
        pool = np.flatnonzero(~declined)
        chosen = rng.permutation(pool)[: max(target - n_audit, 0)]
        labeled = audited.copy()
        labeled[chosen] = True

        chargeback = (action == 0) & (label == 1) & (rng.random(n) < 0.3)
        source = np.select([audited, action == 2, chargeback], [3, 2, 1], default=0)
        collections_delay = np.minimum(2 * _DAY_MS + rng.gamma(3.0, 1.5 * _DAY_MS, n), 14 * _DAY_MS)
        delay = np.select(
            [source == 2, source == 1],
            [
                np.maximum(rng.lognormal(np.log(6 * _HOUR_MS), 0.8, n), _HOUR_MS),
                rng.uniform(1 * _DAY_MS, 5 * _DAY_MS, n),
            ],
            default=collections_delay,
        ).astype(np.int64)
        label_ts = ts + delay
        label_arrival = np.maximum(
            label_ts + np.round(rng.lognormal(np.log(300.0), 0.5, n)).astype(np.int64), arrival + 1
        )
        emitted = labeled & (label_arrival <= arrival.max())

        host = rng.integers(1, 4, n)
        latency = np.round(rng.lognormal(np.log(9.0), 0.35, n) + 4.0 * (host == 3), 3)
        customers = rng.integers(0, max(int(n * 0.85), 1), n)

        cols.update(
            ts=ts,
            arrival_ts=arrival,
            score=score,
            prediction=prediction,
            action=action,
            label=label,
            labeled=labeled,
            emitted=emitted,
            source=source,
            label_ts=label_ts,
            label_arrival_ts=label_arrival,
            host=host,
            latency_ms=latency,
            customer=customers,
            covariate_shifted=shifted,
            concept_drifted=drifted,
        )
        return cols

    @property
    def end_ms(self) -> int:
        """Arrival time of the last prediction: the stream ends there; later labels are not emitted."""
        return int(self._stream["arrival_ts"].max())

    @functools.cached_property
    def _ids(self) -> np.ndarray:
        return np.array([f"credit-{self.seed}-{i:08d}" for i in range(self.n_events)], dtype=object)

    def _event_ids(self, index: np.ndarray) -> list[str]:
        return self._ids[index].tolist()

    def stream_frame(self) -> pd.DataFrame:
        """One row per prediction, in event-time order, with everything the stream knows.

        Columns: ``event_id``, ``ts``, ``arrival_ts``, the features, ``score``, ``prediction``,
        ``action``, ``label`` (the true outcome, also for rows never labeled), ``labeled`` (the
        prediction ever gets a label), ``label_emitted`` (its label arrives before the stream
        ends), ``label_ts``, ``label_arrival_ts``, ``source``, ``covariate_shifted``,
        ``concept_drifted``.
        """
        s = self._stream
        frame = self._public_frame(s)
        frame.insert(0, "arrival_ts", s["arrival_ts"])
        frame.insert(0, "ts", s["ts"])
        frame.insert(0, "event_id", self._event_ids(np.arange(self.n_events)))
        frame["score"] = s["score"]
        frame["prediction"] = s["prediction"]
        frame["action"] = np.asarray(("approve", "decline", "review"), dtype=object)[s["action"]]
        frame["label"] = s["label"]
        frame["labeled"] = s["labeled"]
        frame["label_emitted"] = s["emitted"]
        frame["label_ts"] = s["label_ts"]
        frame["label_arrival_ts"] = s["label_arrival_ts"]
        frame["source"] = np.where(s["labeled"], np.asarray(_SOURCES, dtype=object)[s["source"]], None)
        frame["covariate_shifted"] = s["covariate_shifted"]
        frame["concept_drifted"] = s["concept_drifted"]
        return frame

    def _feature_lists(self, index: np.ndarray) -> list[list[Any]]:
        s = self._stream
        out: list[list[Any]] = []
        for name in NUMERIC:
            values = s[name][index]
            if name in _NULLABLE:
                missing = np.isnan(values)
                conv = np.where(missing, 0, values).astype(np.int64 if name == "months_employed" else float)
                obj = conv.astype(object)
                obj[missing] = None
                out.append(obj.tolist())
            elif name in _INT_COLUMNS:
                out.append(values.astype(np.int64).tolist())
            else:
                out.append(values.tolist())
        for name in CATEGORICAL:
            out.append(np.asarray(LEVELS[name], dtype=object)[s[name][index]].tolist())
        return out

    def _prediction_events(self, index: np.ndarray) -> list[dict[str, Any]]:
        s = self._stream
        # A dict display builds these twice as fast as dict(zip(names, row)).
        features = [
            {
                "age": age,
                "income": income,
                "debt_to_income": dti,
                "credit_utilization": util,
                "n_open_accounts": n_open,
                "n_delinquencies": n_delinq,
                "months_employed": tenure,
                "loan_amount": loan,
                "region": region,
                "employment_type": employment,
                "home_ownership": housing,
                "channel": channel,
                "age_band": band,
                "has_mortgage": mortgage,
            }
            for (
                age,
                income,
                dti,
                util,
                n_open,
                n_delinq,
                tenure,
                loan,
                region,
                employment,
                housing,
                channel,
                band,
                mortgage,
            ) in zip(*self._feature_lists(index))
        ]
        actions = np.asarray(("approve", "decline", "review"), dtype=object)[s["action"][index]].tolist()
        return [
            {
                "schema_version": 1,
                "event_id": eid,
                "model": "credit",
                "version": "v1",
                "ts": t,
                "features": f,
                "prediction": p,
                "score": sc,
                "action": a,
                "role": "champion",
                "host": f"scorer-{h}",
                "latency_ms": lat,
                "entity_id": f"cust-{c:07d}",
            }
            for eid, t, f, p, sc, a, h, lat, c in zip(
                self._event_ids(index),
                s["ts"][index].tolist(),
                features,
                s["prediction"][index].tolist(),
                s["score"][index].tolist(),
                actions,
                s["host"][index].tolist(),
                s["latency_ms"][index].tolist(),
                s["customer"][index].tolist(),
            )
        ]

    def _ground_truth_events(self, index: np.ndarray) -> list[dict[str, Any]]:
        s = self._stream
        sources = np.asarray(_SOURCES, dtype=object)[s["source"][index]].tolist()
        return [
            {"schema_version": 1, "event_id": eid, "model": "credit", "ts": t, "label": y, "source": src}
            for eid, t, y, src in zip(
                self._event_ids(index), s["label_ts"][index].tolist(), s["label"][index].tolist(), sources
            )
        ]

    def events(self, chunk_size: int = 8192) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """Yield ``(arrival_ts_ms, kind, event)`` in arrival order.

        ``kind`` is ``"prediction"`` or ``"ground_truth"``; a ground truth always arrives after
        its prediction. Event dicts follow the driftline contract, schema version 1.
        """
        chunk_size = _check_int("chunk_size", chunk_size, 1)
        s = self._stream
        gt_index = np.flatnonzero(s["emitted"])
        arrival = np.concatenate([s["arrival_ts"], s["label_arrival_ts"][gt_index]])
        kind = np.concatenate([np.zeros(self.n_events, np.int8), np.ones(len(gt_index), np.int8)])
        row = np.concatenate([np.arange(self.n_events), gt_index])
        order = np.lexsort((row, kind, arrival))
        for start in range(0, len(order), chunk_size):
            part = order[start : start + chunk_size]
            is_gt = kind[part] == 1
            preds = iter(self._prediction_events(row[part[~is_gt]]))
            truths = iter(self._ground_truth_events(row[part[is_gt]]))
            for t, g in zip(arrival[part].tolist(), is_gt.tolist()):
                if g:
                    yield t, "ground_truth", next(truths)
                else:
                    yield t, "prediction", next(preds)

    def spec_dict(self, reference_path: str) -> dict[str, Any]:
        """The model spec of this scenario as a plain dict (the YAML document's keys)."""
        return {
            "model": "credit",
            "task": "binary",
            "positive_label": 1,
            "features": [{"name": name, "kind": "numeric"} for name in NUMERIC]
            + [{"name": name, "kind": "categorical"} for name in CATEGORICAL],
            "reference": {
                "path": str(reference_path),
                "prediction_column": "prediction",
                "score_column": "score",
                "label_column": "label",
            },
            "window": "1d",
            "allowed_lateness": "1h",
            "label_ttl": "120d",
            "segments": ["region"],
            "drift": {"fdr": 0.05, "thresholds": {"psi": 0.2}},
            # Daily windows before the concept drift: ROC AUC 0.68-0.74, accuracy 0.85-0.90; after it
            # about 0.60 and 0.79.
            "metrics": [{"name": "roc_auc", "min": 0.65}, {"name": "accuracy", "min": 0.83}],
            # Value per decision in currency (negative = money lost): a declined good customer
            # loses the margin, an approved defaulter loses most of the principal.
            "cost_matrix": {"tp": 0.0, "fp": -300.0, "tn": 0.0, "fn": -2500.0},
            "protected_attribute": "age_band",
            # One alert per phenomenon: input drift on any feature (an effect that exists, FDR
            # controlled, and matters, PSI), and a drop of ROC AUC judged only once 30% of a
            # window is labeled: the first labels of a window are the fast ones (chargebacks of
            # defaulters), a biased sample on which the model looks worse than it is. Measured on
            # the demo stream: before the concept drift ROC AUC stays >= 0.65 from 30% coverage
            # on, after it 0.60 and below.
            "alerts": [
                {"name": "input_drift", "on": "drift", "test": "psi", "feature": "*",
                 "condition": {"fire": {"op": ">=", "value": 0.2}, "clear": {"op": "<", "value": 0.1}},
                 "p_value": 0.05, "severity": "warning"},
                {"name": "performance_drop", "on": "metric", "metric": "roc_auc",
                 "condition": {"fire": {"op": "<", "value": 0.62}, "clear": {"op": ">=", "value": 0.66}},
                 "min_label_coverage": 0.3, "min_samples": 500, "severity": "critical", "retrain": True},
            ],
        }

    def write_event_files(self, directory: str | pathlib.Path) -> tuple[pathlib.Path, ...]:
        """Write ``predictions.jsonl``, ``ground_truth.jsonl``, ``reference.parquet``, ``spec.yaml``.

        Each JSON Lines file is sorted by its events' own ``ts``. Returns the four paths in that
        order; the spec's reference path is absolute.
        """
        out = pathlib.Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        s = self._stream
        paths = (
            out / "predictions.jsonl",
            out / "ground_truth.jsonl",
            out / "reference.parquet",
            out / "spec.yaml",
        )
        gt_index = np.flatnonzero(s["emitted"])
        gt_index = gt_index[np.argsort(s["label_ts"][gt_index], kind="stable")]
        for path, index, make in (
            (paths[0], np.argsort(s["ts"], kind="stable"), self._prediction_events),
            (paths[1], gt_index, self._ground_truth_events),
        ):
            with open(path, "wb") as fh:
                for start in range(0, len(index), 8192):
                    fh.write(b"".join(orjson.dumps(e) + b"\n" for e in make(index[start : start + 8192])))
        self._reference.to_parquet(paths[2], index=False)
        spec = self.spec_dict(str(paths[2].resolve()))
        paths[3].write_text(yaml.safe_dump(spec, sort_keys=False))
        return paths
