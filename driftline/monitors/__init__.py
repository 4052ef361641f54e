"""Pure monitoring computations: drift tests, accumulators, profiles, FDR control."""

from driftline.monitors.accumulators import CategoricalAccumulator, NumericAccumulator
from driftline.monitors.domain import domain_classifier
from driftline.monitors.drift import (
    DEFAULT_TESTS,
    PSI_EPSILON,
    UNSEEN_PSEUDO_COUNT,
    chi_squared,
    compare,
    compare_many,
    jensen_shannon,
    ks,
    psi,
    wasserstein,
)
from driftline.monitors.fdr import benjamini_hochberg
from driftline.monitors.profile import CategoricalProfile, NumericProfile
from driftline.monitors.results import DomainClassifierResult, DriftResult

__all__ = [
    "CategoricalAccumulator",
    "CategoricalProfile",
    "DEFAULT_TESTS",
    "DomainClassifierResult",
    "DriftResult",
    "NumericAccumulator",
    "NumericProfile",
    "PSI_EPSILON",
    "UNSEEN_PSEUDO_COUNT",
    "benjamini_hochberg",
    "chi_squared",
    "compare",
    "compare_many",
    "domain_classifier",
    "jensen_shannon",
    "ks",
    "psi",
    "wasserstein",
]
