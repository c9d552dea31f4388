"""Warm start across vocabulary changes: the serving model's embeddings (and the wide part's rows)
follow their tokens to the new vocabulary's ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import SPAN, run_step

from pipeline_lib import artifacts, report, serving
from pipeline_lib.steps import train

TINY = {"steps": 1, "epochs": 1, "learning_rate": 1e-9}  # one step that moves no weight measurably


def tokens(transform_graph: str, vocabulary: str) -> list[bytes]:
    import tensorflow_transform as tft

    return tft.TFTransformOutput(transform_graph).vocabulary_by_name(vocabulary)


def test_a_grown_vocabulary_keeps_each_shared_tokens_embedding(chain, make_config):
    """v1 is trained on vocabularies of 3 tokens (vocab_size 3, the missing token one); the next run's are the window's
    whole. A company in both starts from its v1 row, a company new to the vocabulary from the fresh
    row a cold start gets; a layer whose rows cannot be matched is reported fresh, never warm."""
    small = make_config({"features": {"vocab_size": 3}, "serving": {"model_name": "taxi_vocab"}}, name="taxi_vocab_small")
    small_graph = run_step(small, "transform", **artifacts.inputs_from("transform", chain))["transform_graph"]
    v1 = run_step(small, "train", transform_graph=small_graph, examples=chain["transform"]["examples"])
    serving.publish(Path(v1["model"]), small.serving.model_dir(), {"span": "v1", "run_id": "small"})

    def grown(name: str, training: dict) -> tuple[dict, dict]:
        config = make_config({"training": {**TINY, **training}, "serving": {"model_name": "taxi_vocab"}}, name=name)
        result = run_step(config, "train", **artifacts.inputs_from("train", chain))
        return result, train.saved_weights(Path(result["model"]) / train.WEIGHTS)

    warm, warm_weights = grown("taxi_vocab_warm", {})
    cold, cold_weights = grown("taxi_vocab_cold", {"warm_start": {"enabled": False}})
    old_weights = train.saved_weights(Path(v1["model"]) / train.WEIGHTS)
    old, new = tokens(small_graph, "company"), tokens(chain["transform"]["transform_graph"], "company")
    assert len(old) == small.features.vocab_size < len(new), "the missing token among top_k, then more companies"

    started = warm["warm_start"]
    assert started["from_version"] == 1 and started["fresh"] == {}
    assert started["remapped"]["embed_company"] == {"company": {"carried": len(old), "new": len(new) - len(old), "dropped": 0}}
    assert set(started["remapped"]) == {"output", *(f"embed_{key}" for key in small.features.categorical + small.features.vocabulary)}
    assert {"embed_company", "embed_pickup_latitude", "hidden_0", "output"} <= set(started["layers"])
    assert cold["warm_start"]["from_version"] is None

    embedding = {name: weights["embed_company"][0] for name, weights in
                 (("old", old_weights), ("warm", warm_weights), ("cold", cold_weights))}
    for token in old:  # shared: the v1 row, at the token's new id
        np.testing.assert_allclose(embedding["warm"][new.index(token)], embedding["old"][old.index(token)], atol=1e-6)
        assert not np.allclose(embedding["cold"][new.index(token)], embedding["old"][old.index(token)], atol=1e-3)
    for token in new[len(old):]:  # new: the fresh row
        np.testing.assert_allclose(embedding["warm"][new.index(token)], embedding["cold"][new.index(token)], atol=1e-6)

    # the wide part: the output kernel's rows over company's one-hot (its last block) follow the tokens too
    oov = small.features.oov_buckets
    kernel = {name: weights["output"][0] for name, weights in (("old", old_weights), ("warm", warm_weights))}
    company = {"old": kernel["old"][-(len(old) + oov):], "warm": kernel["warm"][-(len(new) + oov):]}
    for token in old:
        np.testing.assert_allclose(company["warm"][new.index(token)], company["old"][old.index(token)], atol=1e-6)
    np.testing.assert_allclose(company["warm"][-oov:], company["old"][-oov:], atol=1e-6)  # the OOV buckets
    hidden = small.training.hidden_units[-1]
    np.testing.assert_allclose(kernel["warm"][:hidden], kernel["old"][:hidden], atol=1e-6)
    text, _ = report.summary("taxi_vocab_warm", SPAN)
    assert f"warm from v1 ({len(started['layers'])} layers, 8 remapped by token, 0 fresh)" in text

    # one hidden layer of 64: the output's rows over the hidden units no longer match v1's 32
    shallow, _ = grown("taxi_vocab_shallow", {"hidden_units": [64]})
    assert list(shallow["warm_start"]["fresh"]) == ["output"]
    assert "output" not in shallow["warm_start"]["layers"] and "hidden_0" in shallow["warm_start"]["layers"]
    assert "1 fresh: output)" in report.summary("taxi_vocab_shallow", SPAN)[0]
