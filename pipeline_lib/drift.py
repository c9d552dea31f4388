"""Drift and skew between two TFDV statistics of one feature, robust to outliers and aware of
sample size (ML env).

TFDV's own comparators (Jensen-Shannon over equal-width histograms, L-infinity) alarm on clean
taxi spans: one 1,710-mile trip stretches the histogram so that everything lands in one bucket, and
a few dozen rows move a share by 0.1 by chance. Here:
- numbers: the Wasserstein distance over the inner quantiles (1%..99%, from TFDV's quantile
  histogram), divided by the reference's interdecile range: how far the bulk of the distribution
  moved, in units of its own spread; a single outlier only moves the min or max, which are left out;
- strings: the largest change of one value's share (L-infinity over the value shares);
and a finding also needs the change to be significant (two-sample Kolmogorov-Smirnov from the
quantiles, chi-square over the value counts) below `significance`, so a small span's noise passes.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow_data_validation as tfdv
from scipy import stats as scipy_stats
from tensorflow_metadata.proto.v0 import statistics_pb2

QUANTILES = 100  # TFDV's quantile histogram buckets (StatsOptions.num_quantiles_histogram_buckets)
TOP_MOVED = 3


def feature_stats(stats, feature: str):
    try:
        return tfdv.get_feature_stats(stats.datasets[0], tfdv.FeaturePath([feature]))
    except ValueError:
        return None


def _quantiles(fs) -> tuple[np.ndarray, int] | None:
    """The quantile points q(i/N), i = 0..N, and the number of values, or None without values."""
    for h in fs.num_stats.histograms:
        if h.type == statistics_pb2.Histogram.QUANTILES and h.buckets:
            points = [h.buckets[0].low_value] + [b.high_value for b in h.buckets]
            count = int(fs.num_stats.common_stats.num_non_missing)
            return np.array(points, dtype=float), count
    return None


def _numeric(ref, cur) -> dict | None:
    a, b = _quantiles(ref), _quantiles(cur)
    if a is None or b is None or len(a[0]) != len(b[0]):
        return None
    return quantile_change(*a, *b, fallback_spread=ref.num_stats.std_dev)


def quantile_change(qa: np.ndarray, na: int, qb: np.ndarray, nb: int, fallback_spread: float = 0.0) -> dict:
    """From the quantile points q(i/N), i = 0..N, of a reference (a) and a current (b) sample."""
    n = len(qa) - 1
    inner = slice(1, n)  # without the min and the max: an outlier cannot swing it
    spread = qa[int(n * 0.9)] - qa[int(n * 0.1)] or fallback_spread or 1.0
    distance = float(np.mean(np.abs(qb[inner] - qa[inner])) / spread)
    # KS statistic from the quantile points: the largest gap of the two step CDFs (ties, common in
    # counts and codes, are treated alike on both sides)
    points = np.union1d(qa, qb)
    d = float(np.max(np.abs(np.searchsorted(qa, points, "right") - np.searchsorted(qb, points, "right")))) / (n + 1)
    p_value = float(scipy_stats.kstwobign.sf(d * math.sqrt(na * nb / (na + nb)))) if na and nb else 1.0
    moved = sorted(range(1, n), key=lambda i: -abs(qb[i] - qa[i]))[:TOP_MOVED]
    top = [f"p{round(100 * i / n)} {qa[i]:.4g} -> {qb[i]:.4g}" for i in sorted(moved)]
    return {"statistic": distance, "name": "Wasserstein distance / interdecile range", "p_value": p_value,
            "moved": top}


def _counts(fs) -> dict[str, float]:
    s = fs.string_stats
    if s.rank_histogram.buckets:
        counts = {b.label: b.sample_count for b in s.rank_histogram.buckets}
    else:
        counts = {v.value: v.frequency for v in s.top_values}
    rest = s.common_stats.num_non_missing - sum(counts.values())
    if rest > 0:
        counts["(other values)"] = rest
    return counts


def _categorical(ref, cur) -> dict | None:
    return share_change(_counts(ref), _counts(cur))


def share_change(ca: dict, cb: dict) -> dict | None:
    """From the value counts of a reference (a) and a current (b) sample."""
    values = sorted(set(ca) | set(cb), key=str)
    a = np.array([ca.get(v, 0) for v in values], dtype=float)
    b = np.array([cb.get(v, 0) for v in values], dtype=float)
    if not a.sum() or not b.sum():
        return None
    share_a, share_b = a / a.sum(), b / b.sum()
    gaps = np.abs(share_b - share_a)
    table = np.array([a, b])
    table = table[:, table.sum(axis=0) > 0]
    p_value = float(scipy_stats.chi2_contingency(table)[1]) if table.shape[1] > 1 else 1.0
    top = [f"{values[i]!r} {share_a[i]:.0%} -> {share_b[i]:.0%}" for i in np.argsort(-gaps)[:TOP_MOVED] if gaps[i] > 0]
    return {"statistic": float(gaps.max()), "name": "largest change of a value's share (L-infinity)",
            "p_value": p_value, "moved": top}


def compare(feature: str, reference, current) -> dict | None:
    """The change of `feature` from the `reference` statistics to the `current` ones, or None when
    either has no values of it (presence and type are the schema's checks)."""
    ref, cur = feature_stats(reference, feature), feature_stats(current, feature)
    if ref is None or cur is None or ref.WhichOneof("stats") != cur.WhichOneof("stats"):
        return None
    return _categorical(ref, cur) if ref.HasField("string_stats") else _numeric(ref, cur)


def finding(kind: str, feature: str, against: str, change: dict, threshold: float, significance: float) -> dict | None:
    """A drift or skew finding when the change is both large and significant; its description
    names the statistic, the threshold and what moved."""
    if change is None or change["statistic"] <= threshold or change["p_value"] >= significance:
        return None
    description = (f"{feature} changed against {against}: {change['name']} {change['statistic']:.3f} "
                   f"> threshold {threshold:g} (p-value {change['p_value']:.1e} < {significance:g}); "
                   f"moved most: {'; '.join(change['moved'])}")
    return {"feature": feature, "kind": kind, "description": description, "statistic": round(change["statistic"], 6),
            "examples": change["moved"]}
