"""Drift and skew of one feature between a reference and a current sample, robust to outliers and
aware of sample size (ML env). Both are summaries of TFDV statistics (`summary`): a new span's, and
its reference, the spans before it merged (`merge`: counts exactly, quantiles as the mixture of the
spans' quantile functions).

TFDV's own comparators (Jensen-Shannon over equal-width histograms, L-infinity) alarm on clean
taxi spans: one 1,710-mile trip stretches the histogram so that everything lands in one bucket, and
a few dozen rows move a share by 0.1 by chance. Here:
- numbers: the Wasserstein distance over the inner deciles (10%..90%, from TFDV's quantile
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

# TFDV's quantile histogram buckets (StatsOptions.num_quantiles_histogram_buckets), its default:
# TFDV builds each numeric feature's histograms from 100 times as many quantiles in Python, which
# cost 0.79 s per span and split at 100 buckets against 0.08 s at 10 (18 numeric taxi features)
QUANTILES = 10
TOP_MOVED = 3


def feature_stats(stats, feature: str):
    try:
        return tfdv.get_feature_stats(stats.datasets[0], tfdv.FeaturePath([feature]))
    except ValueError:
        return None


def summary(fs) -> dict | None:
    """What comparing needs of one feature's statistics: value counts of a string feature; quantile
    points q(i/N), i = 0..N, count, mean and std of a number. None without values."""
    if fs is None:
        return None
    if fs.HasField("string_stats"):
        counts = _counts(fs)
        return {"kind": "strings", "counts": counts} if counts else None
    count = int(fs.num_stats.common_stats.num_non_missing)
    for h in fs.num_stats.histograms:
        if h.type == statistics_pb2.Histogram.QUANTILES and h.buckets and count:
            points = [h.buckets[0].low_value] + [b.high_value for b in h.buckets]
            return {"kind": "numbers", "quantiles": points, "count": count, "mean": fs.num_stats.mean,
                    "std": fs.num_stats.std_dev}
    return None


def merge(summaries: list[dict]) -> dict | None:
    """One summary of several samples of a feature (the spans of a reference): string counts
    summed; numbers' mean and std pooled exactly, their quantiles those of the mixture of the
    samples' piecewise-linear quantile functions (approximate)."""
    summaries = [s for s in summaries if s]
    if not summaries or len({s["kind"] for s in summaries}) > 1:
        return None
    if len(summaries) == 1:
        return summaries[0]
    if summaries[0]["kind"] == "strings":
        counts: dict[str, float] = {}
        for s in summaries:
            for value, n in s["counts"].items():
                counts[value] = counts.get(value, 0) + n
        return {"kind": "strings", "counts": counts}
    n = np.array([s["count"] for s in summaries], dtype=float)
    means = np.array([s["mean"] for s in summaries])
    mean = float(n @ means / n.sum())
    var = float(n @ (np.array([s["std"] for s in summaries]) ** 2 + means ** 2) / n.sum() - mean ** 2)
    return {"kind": "numbers", "quantiles": mixture_quantiles([(np.array(s["quantiles"]), c) for s, c in zip(summaries, n)]),
            "count": int(n.sum()), "mean": mean, "std": math.sqrt(max(var, 0.0))}


def mixture_quantiles(parts: list[tuple[np.ndarray, float]]) -> list[float]:
    """The quantile points of a mixture of samples given by their own quantile points and sizes."""
    levels = np.linspace(0, 1, len(parts[0][0]))
    grid = np.unique(np.concatenate([points for points, _ in parts]))
    total = sum(n for _, n in parts)
    cdf = sum(n * np.interp(grid, points, levels, left=0.0, right=1.0) for points, n in parts) / total
    return [float(x) for x in np.interp(levels, np.maximum.accumulate(cdf), grid)]


def quantile_change(qa: np.ndarray, na: int, qb: np.ndarray, nb: int, fallback_spread: float = 0.0) -> dict:
    """From the quantile points q(i/N), i = 0..N, of a reference (a) and a current (b) sample."""
    n = len(qa) - 1
    inner = slice(1, n)  # without the min and the max: an outlier cannot swing it
    spread = qa[int(n * 0.9)] - qa[int(n * 0.1)] or fallback_spread or 1.0
    distance = float(np.mean(np.abs(qb[inner] - qa[inner])) / spread)
    # KS statistic from the quantile points: the largest gap of the two step CDFs (ties, common in
    # counts and codes, are treated alike on both sides), less the 1/n the quantile points cannot
    # resolve (a code's share moving across a decile boundary makes a gap of 1/n with no drift:
    # clean taxi weeks had community areas "significant" at p 1e-14)
    points = np.union1d(qa, qb)
    gap = np.max(np.abs(np.searchsorted(qa, points, "right") - np.searchsorted(qb, points, "right")))
    d = max(0.0, float(gap - 1)) / (n + 1)
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


def change(reference: dict | None, current: dict | None) -> dict | None:
    """How far `current` moved from `reference` (summaries of one feature), or None when either
    has no values or their kinds differ (presence and type are the schema's checks)."""
    if not reference or not current or reference["kind"] != current["kind"]:
        return None
    if reference["kind"] == "strings":
        return share_change(reference["counts"], current["counts"])
    return quantile_change(np.array(reference["quantiles"]), reference["count"], np.array(current["quantiles"]),
                           current["count"], fallback_spread=reference["std"])


def finding(kind: str, feature: str, against: str, change: dict | None, threshold: float, significance: float,
            block: float | None = None) -> dict | None:
    """A drift or skew finding when the change is both large and significant: `blocking` past
    `block`, otherwise of the severity configured. Its description names the statistic, the
    threshold and what moved."""
    if change is None or change["statistic"] <= threshold or change["p_value"] >= significance:
        return None
    blocks = block is not None and change["statistic"] > block
    limit = f"block level {block:g}" if blocks else f"threshold {threshold:g}"
    description = (f"{feature} changed against {against}: {change['name']} {change['statistic']:.3f} "
                   f"> {limit} (p-value {change['p_value']:.1e} < {significance:g}); "
                   f"moved most: {'; '.join(change['moved'])}")
    return {"feature": feature, "kind": kind, "description": description, "statistic": round(change["statistic"], 6),
            "examples": change["moved"], **({"severity": "blocking"} if blocks else {})}
