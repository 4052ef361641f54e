"""W1 - drift tests for one window: driftline's compare_many vs a scipy loop, same data, same run.

25 features (20 numeric, 5 categorical with 10 levels), reference 10,000 rows, window 10,000
rows, 5 numeric and 2 categorical features drifted, fixed seed. The timed span starts from
filled window accumulators and ends with all 25 results. The scipy loop runs
``scipy.stats.ks_2samp`` per numeric feature and ``scipy.stats.chi2_contingency`` per
categorical feature on the same data; the statistics and p-values must agree to 1e-9.

Run: ``python bench/w1_drift.py [--repeats N]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import scipy
from scipy import stats

from driftline.monitors import CategoricalProfile, NumericProfile, compare_many

from _docs import cpu_model

SEED = 20240601
N_REF = N_CUR = 10_000
N_NUM, N_CAT, LEVELS = 20, 5, 10
DRIFT_NUM, DRIFT_CAT = 5, 2


def make_data(seed: int = SEED) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    ref, cur = {}, {}
    for i in range(N_NUM):
        ref[f"num_{i:02d}"] = rng.normal(0.0, 1.0, N_REF)
        shift = 0.1 if i < DRIFT_NUM else 0.0
        cur[f"num_{i:02d}"] = rng.normal(shift, 1.0, N_CUR)
    levels = np.array([f"level_{j}" for j in range(LEVELS)], dtype=object)
    base = np.full(LEVELS, 1.0 / LEVELS)
    for i in range(N_CAT):
        ref[f"cat_{i}"] = rng.choice(levels, N_REF, p=base)
        p = base.copy()
        if i < DRIFT_CAT:
            p[0] += 0.03
            p[-1] -= 0.03
        cur[f"cat_{i}"] = rng.choice(levels, N_CUR, p=p)
    return ref, cur


def scipy_loop(ref: dict[str, np.ndarray], cur: dict[str, np.ndarray]) -> list[tuple[str, float, float]]:
    out = []
    for name in ref:
        if name.startswith("num_"):
            r = stats.ks_2samp(ref[name], cur[name])
            out.append((name, float(r.statistic), float(r.pvalue)))
        else:
            cats = sorted(set(ref[name]) | set(cur[name]))
            rc = {c: 0 for c in cats}
            cc = dict(rc)
            for v in ref[name]:
                rc[v] += 1
            for v in cur[name]:
                cc[v] += 1
            table = np.array([[rc[c] for c in cats], [cc[c] for c in cats]])
            r = stats.chi2_contingency(table, correction=False)
            out.append((name, float(r.statistic), float(r.pvalue)))
    return out



def _times(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=400, help="driftline repetitions (default 400)")
    parser.add_argument("--scipy-repeats", type=int, default=20, help="scipy loop repetitions (default 20)")
    args = parser.parse_args()

    ref, cur = make_data()
    profiles = {
        name: NumericProfile.fit(v, name=name) if name.startswith("num_") else CategoricalProfile.fit(v, name=name)
        for name, v in ref.items()
    }
    accs = {}
    for name, profile in profiles.items():
        acc = profile.new_accumulator()
        for batch in np.array_split(cur[name], 20):
            acc.update(batch)
        accs[name] = acc
    w1_tests = {"numeric": ["ks"], "categorical": ["chi2"]}

    ours = compare_many(profiles, accs, w1_tests)
    theirs = scipy_loop(ref, cur)
    worst = rel_worst = 0.0
    for r, (name, stat, p) in zip(ours, theirs):
        assert r.feature == name, (r.feature, name)
        worst = max(worst, abs(r.statistic - stat), abs(r.p_value - p))
        if p > 0:
            rel_worst = max(rel_worst, abs(r.p_value - p) / p)
    assert worst <= 1e-9, f"statistics differ from scipy by {worst}"
    assert all(r.exact for r in ours)

    def loop() -> None:
        for name in ref:
            if name.startswith("num_"):
                stats.ks_2samp(ref[name], cur[name])
            else:
                stats.chi2_contingency(tables[name], correction=False)

    # scipy gets the same contingency tables (built outside the timed part).
    tables = {}
    for name, prof in profiles.items():
        if isinstance(prof, CategoricalProfile):
            tables[name] = np.array(
                [prof.reference_counts, [accs[name].counts.get(c, 0) for c in prof.categories]]
            )
    for _ in range(5):
        compare_many(profiles, accs, w1_tests)
        compare_many(profiles, accs)
    # Interleaved rounds: a change in machine load hits both sides alike.
    ours_t, single_t, default_t, scipy_t = [], [], [], []
    per_round = max(args.repeats // args.scipy_repeats, 1)
    for _ in range(args.scipy_repeats):
        scipy_t += _times(loop, 1)
        ours_t += _times(lambda: compare_many(profiles, accs, w1_tests), per_round)
        single_t += _times(lambda: compare_many(profiles, accs, w1_tests, n_threads=1), per_round)
        default_t += _times(lambda: compare_many(profiles, accs), max(per_round // 4, 1))
    ours_ms, single_ms, default_ms, scipy_ms = (statistics.median(t) for t in (ours_t, single_t, default_t, scipy_t))
    drifted = [r.feature for r in ours if r.p_value < 0.01]

    print("W1 - drift tests for one window")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cpus, "
          f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print("load average (1, 5, 15 min) at the end: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    print(f"features: {N_NUM} numeric (ks) + {N_CAT} categorical with {LEVELS} levels (chi2); "
          f"reference {N_REF:,} rows, window {N_CUR:,} rows; seed {SEED}")
    print(f"max |difference| vs scipy (statistic, p-value): {worst:.2e}; "
          f"max relative p-value difference: {rel_worst:.2e}")
    print(f"features with p < 0.01: {', '.join(drifted)}")
    print()
    print("| what | median ms | repetitions |")
    print("| --- | ---: | ---: |")
    print(f"| driftline compare_many (ks + chi2, 25 results; n_threads=None: {len(os.sched_getaffinity(0))} threads) | "
          f"{ours_ms:.2f} | {len(ours_t)} |")
    print(f"| the same on one thread (n_threads=1) | {single_ms:.2f} | {len(single_t)} |")
    print(f"| scipy loop (ks_2samp + chi2_contingency) | {scipy_ms:.2f} | {len(scipy_t)} |")
    print(f"| speed-up (default, one thread) | {scipy_ms / ours_ms:.1f}x, {scipy_ms / single_ms:.1f}x | |")
    print(f"| driftline full default set (ks+psi+wasserstein / chi2+psi+js, 75 results) | {default_ms:.2f} | "
          f"{len(default_t)} |")


if __name__ == "__main__":
    main()
