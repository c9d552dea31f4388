"""What the label's task kind (`label.task`) means for the model, in the ML environment: the
label's encoding in preprocessing_fn, the output layer, loss and Keras metrics a model builder
uses, the class names, and the TF Serving signatures the exported model carries.

User modules call `label_ids` (multiclass) and `head`, so a new pipeline's module states only its
features and hidden layers."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tensorflow.core.protobuf import saved_model_pb2

BINARY_CLASSES = ["0", "1"]
OUTPUT_LAYER = "output"


def dense(x, default) -> tf.Tensor:
    """A raw column (var-len in the tf.Examples, so sparse when it may be missing) as a dense
    rank-1 tensor with `default` where it is missing: what a label or a transform starts from."""
    if isinstance(x, tf.sparse.SparseTensor):
        x = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default)
    return tf.reshape(x, [-1])


def label_ids(class_names: tf.Tensor, config) -> tf.Tensor:
    """Multiclass: string class names -> class ids through a TFT vocabulary named after the label
    (its tokens are the class names, in the order of the model's outputs)."""
    return tft.compute_and_apply_vocabulary(class_names, vocab_filename=config.label.key)


def class_names(config, tf_transform_output) -> list[str]:
    """Class names in output order: the label vocabulary's tokens (multiclass), "0"/"1" (binary),
    none (regression)."""
    if config.label.task == "multiclass":
        return [t.decode() if isinstance(t, bytes) else str(t)
                for t in tf_transform_output.vocabulary_by_name(config.label.key)]
    return BINARY_CLASSES if config.label.task == "binary" else []


def head(config, tf_transform_output):
    """(output layer, loss, Keras metrics) for the label's task. The output layer is float32 (mixed
    precision on GPU) and named `output`, so warm start finds it."""
    task = config.label.task
    if task == "binary":
        return (keras.layers.Dense(1, activation="sigmoid", dtype="float32", name=OUTPUT_LAYER),
                "binary_crossentropy", [keras.metrics.BinaryAccuracy(), keras.metrics.AUC(name="auc")])
    if task == "multiclass":
        classes = len(class_names(config, tf_transform_output))
        return (keras.layers.Dense(classes, activation="softmax", dtype="float32", name=OUTPUT_LAYER),
                "sparse_categorical_crossentropy", [keras.metrics.SparseCategoricalAccuracy()])
    return (keras.layers.Dense(1, dtype="float32", name=OUTPUT_LAYER),
            "mean_squared_error", [keras.metrics.MeanAbsoluteError()])


def signatures(config, classes: list[str], predict) -> dict:
    """TF Serving's Classify (classification tasks) or Regress (regression) signature over
    `predict` (serialized tf.Examples -> the model's output), input `inputs` as those APIs send it.
    Classify answers `classes` (names) and `scores` per class; Regress answers `outputs`."""
    inputs = tf.TensorSpec(shape=[None], dtype=tf.string, name="inputs")
    if config.label.task == "regression":
        @tf.function(input_signature=[inputs])
        def regress(serialized):
            return {"outputs": predict(serialized)}

        return {"regress": regress}
    names = tf.constant(classes)

    @tf.function(input_signature=[inputs])
    def classify(serialized):
        scores = predict(serialized)
        if config.label.task == "binary":
            scores = tf.concat([1.0 - scores, scores], axis=1)
        return {"classes": tf.tile(names[tf.newaxis, :], [tf.shape(scores)[0], 1]), "scores": scores}

    return {"classify": classify}


# TF Serving dispatches its Classify and Regress APIs only to signatures of these method names;
# tf.saved_model.save writes every signature as Predict
METHOD_NAMES = {"classify": "tensorflow/serving/classify", "regress": "tensorflow/serving/regress"}


def set_method_names(saved_model_dir) -> None:
    """Rewrite the SavedModel's signature method names for TF Serving (the graph is unchanged)."""
    path = Path(saved_model_dir) / "saved_model.pb"
    proto = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    for meta_graph in proto.meta_graphs:
        for name, method in METHOD_NAMES.items():
            if name in meta_graph.signature_def:
                meta_graph.signature_def[name].method_name = method
    path.write_bytes(proto.SerializeToString())
