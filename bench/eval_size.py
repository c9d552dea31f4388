"""How many eval rows evaluate needs: the spread of a model's metrics over disjoint samples of the
newest spans' eval rows, per sample size (what `evaluation.recent_rows` chooses).

    .venv-ml/bin/python bench/eval_size.py MODEL_DIR RUN_INGEST_DIR [--sizes 2000 5000 10000 20000 50000]

MODEL_DIR: a pushed model (its serving_default signature); RUN_INGEST_DIR: a run's ingest folder
(its result lists the window's spans; the newest spans' eval rows are used, up to 200,000). Prints,
per size, the mean and standard deviation of AUC and accuracy over the disjoint samples that fit.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The area under the ROC curve by ranks (Mann-Whitney), ties averaged."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    positives = labels.sum()
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * (len(labels) - positives)))


def main() -> None:
    import tensorflow as tf

    from pipeline_lib import spans

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("ingest", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000, 20000, 50000])
    args = parser.parse_args()
    entries = json.loads((args.ingest / "result.json").read_text())["spans"]
    files = spans.files(spans.recent(entries, "eval", 200_000), "eval")
    model = tf.saved_model.load(str(args.model))
    predict = model.signatures["serving_default"]
    transform = model.signatures["transform_features"]
    key = json.loads((args.model / "assets.extra" / "label.json").read_text())["key"]  # a binary label
    labels, scores = [], []
    for batch in tf.data.TFRecordDataset(files).batch(4096):
        labels.append(transform(examples=batch)[key].numpy().ravel())
        scores.append(predict(examples=batch)["outputs"].numpy().ravel())
    labels, scores = np.concatenate(labels), np.concatenate(scores)
    order = np.random.default_rng(0).permutation(len(labels))
    print(f"{len(labels):,} eval rows of the newest spans; AUC on all of them {auc(labels, scores):.4f}")
    print(f"{'rows':>8} {'samples':>8} {'AUC mean':>9} {'AUC std':>8} {'accuracy std':>13}")
    for size in args.sizes:
        parts = [order[i:i + size] for i in range(0, len(order) - size + 1, size)]
        if len(parts) < 2:
            continue
        aucs = [auc(labels[p], scores[p]) for p in parts]
        accuracies = [float(((scores[p] > 0.5) == labels[p]).mean()) for p in parts]
        print(f"{size:>8,} {len(parts):>8} {np.mean(aucs):>9.4f} {np.std(aucs, ddof=1):>8.4f} {np.std(accuracies, ddof=1):>13.4f}")


if __name__ == "__main__":
    main()
