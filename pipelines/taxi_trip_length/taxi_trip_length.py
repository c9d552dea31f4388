"""taxi_trip_length: what is really this pipeline's, its label.

A trip's length class (short < 2 mi, medium < 8 mi, long), computed from `trip_miles`;
`task.label_ids` turns the class names into ids through the label's vocabulary. The features are
transformed by the platform's code for their kind and the model is its DNN (pipeline.yaml).
"""

import tensorflow as tf

from pipeline_lib import task
from pipeline_lib.transforms import transform_features


def preprocessing_fn(inputs, config):
    outputs = transform_features(inputs, config)
    miles = task.dense(inputs["trip_miles"], 0.0)
    length = tf.where(miles < 2, "short", tf.where(miles < 8, "medium", "long"))
    outputs[config.label.key] = task.label_ids(length, config)
    return outputs
