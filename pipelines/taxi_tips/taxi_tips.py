"""taxi_tips: what is really taxi's in this pipeline, its label.

`big_tipper`: a tip above 20% of the fare, computed from `tips` and `fare`, so serving requests
need no tips column. The features are transformed by the platform's ready-made code for their kind
and the model is its wide-and-deep network (pipeline.yaml's `features` and `training`).
"""

import tensorflow as tf

from pipeline_lib.transforms import dense, transform_features


def preprocessing_fn(inputs, config):
    outputs = transform_features(inputs, config)
    fare = dense(inputs["fare"], float("nan"))
    tips = dense(inputs["tips"], 0.0)
    outputs[config.label.key] = tf.where(
        tf.math.is_nan(fare), tf.zeros_like(fare, tf.int64),
        tf.cast(tips > fare * 0.2, tf.int64))
    return outputs
