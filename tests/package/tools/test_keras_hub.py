"""KerasHub transformers: every matmul kernel, true fans, and reloads.

The backbones are built from small configs with random weights: nothing
is downloaded.
"""

import re
import textwrap
import warnings

import keras
import keras_hub
import numpy as np
import pytest
from fresh_process import run_json
from logged import assert_parts_exact
from reference import reference_scale

from keras_scaled_l2 import (
    SCALES,
    PenaltyLogger,
    ScaledL2,
    _keras_internals,
    attach_regularizer,
    penalty_report,
)

SMALL = dict(
    vocabulary_size=50, num_layers=2, hidden_dim=8, intermediate_dim=16
)
BACKBONES = {
    # Encoder: TransformerEncoder, MultiHeadAttention, Dense.
    "bert": lambda: keras_hub.models.BertBackbone(
        num_heads=2, max_sequence_length=8, **SMALL
    ),
    # Decoder: TransformerDecoder, CachedMultiHeadAttention.
    "gpt2": lambda: keras_hub.models.GPT2Backbone(
        num_heads=2, max_sequence_length=8, **SMALL
    ),
    # Gated MLP, grouped-query attention, untied output embedding.
    "llama": lambda: keras_hub.models.LlamaBackbone(
        num_query_heads=2, num_key_value_heads=1, **SMALL
    ),
    # Gated MLP as EinsumDense, attention kernels with heads first.
    "gemma": lambda: keras_hub.models.GemmaBackbone(
        num_query_heads=2, num_key_value_heads=1, head_dim=4, **SMALL
    ),
}


def _build(name):
    keras.utils.set_random_seed(0)
    return BACKBONES[name]()


# Each matmul kernel's (fan_in, fan_out), from the configs above (hidden
# 8, 2 query heads of 4, 1 key/value head where grouped, intermediate 16;
# Gemma's gated MLP halves it), keyed by its layer's name and its weight.
ATTENTION = {
    ("query", "kernel"): (8, 8),
    ("key", "kernel"): (8, 8),
    ("value", "kernel"): (8, 8),
    ("attention_output", "kernel"): (8, 8),
}
GROUPED = {**ATTENTION, ("key", "kernel"): (8, 4), ("value", "kernel"): (8, 4)}
FEEDFORWARD = {
    ("feedforward_intermediate_dense", "kernel"): (8, 16),
    ("feedforward_output_dense", "kernel"): (16, 8),
}
EXPECTED_FANS = {
    "bert": {**ATTENTION, **FEEDFORWARD, ("pooled_dense", "kernel"): (8, 8)},
    "gpt2": {**ATTENTION, **FEEDFORWARD},
    "llama": {
        **GROUPED,
        **FEEDFORWARD,
        ("feedforward_gate_dense", "kernel"): (8, 16),
        # The untied output projection, hidden x vocabulary.
        ("token_embedding", "reverse_embeddings"): (8, 50),
    },
    "gemma": {
        **GROUPED,
        ("ffw_gating", "kernel"): (8, 8),
        ("ffw_gating_2", "kernel"): (8, 8),
        ("ffw_linear", "kernel"): (8, 8),
    },
}


def _layers(model):
    stack = [model]
    while stack:
        layer = stack.pop()
        yield layer
        stack.extend(_keras_internals.sublayers(layer))


def _owners(model):
    """`{id(weight): name of the layer that holds it}`."""
    return {
        id(weight): layer.name
        for layer in _layers(model)
        for weight in _keras_internals.own_trainable_weights(layer)
    }


def _embedding_tables(model):
    """Paths of the lookup tables: every weight named `embeddings`."""
    return {w.path for w in model.trainable_weights if w.name == "embeddings"}


def _matrices(model):
    """Paths of every trainable weight of two dimensions or more but the
    biases (an attention projection's bias is `(heads, head_dim)`)."""
    return {
        w.path
        for w in model.trainable_weights
        if len(w.shape) >= 2 and w.name != "bias"
    }


def _computed_penalties(model):
    """`{path: penalty}` as the model computes them in its losses."""
    weights = [w for w in model.trainable_weights if w.regularizer is not None]
    losses = model.losses[len(model.losses) - len(weights) :]
    return {
        w.path: float(keras.ops.convert_to_numpy(p))
        for w, p in zip(weights, losses, strict=True)
    }


# It replaces the penalties already on the kernels, on purpose.
@pytest.mark.filterwarnings("ignore:attach_regularizer replaced")
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_matmul_kernel_is_penalised_with_its_true_fans(name):
    backbone = _build(name)
    owners = _owners(backbone)
    matmuls = _matrices(backbone) - _embedding_tables(backbone)
    holder = f"{type(backbone).__name__} '{backbone.name}'"
    for scale in SCALES:
        with pytest.warns(UserWarning, match=holder):
            attached = attach_regularizer(
                backbone,
                ScaledL2(0.01, scale=scale),
                include_embeddings=False,
            )
        # 100 % of the matmul kernels, and nothing else.
        assert sorted(attached) == sorted(matmuls)
        computed = _computed_penalties(backbone)
        assert sorted(computed) == sorted(matmuls)
        for weight in backbone.trainable_weights:
            if weight.path not in matmuls:
                continue
            key = (owners[id(weight)], weight.name)
            fan_in, fan_out = EXPECTED_FANS[name][key]
            values = keras.ops.convert_to_numpy(weight).astype("float64")
            want = (
                0.01
                * reference_scale(fan_in, fan_out, values.size, scale)
                * np.sum(values**2)
            )
            assert computed[weight.path] == pytest.approx(want, rel=1e-5), (
                scale,
                weight.path,
            )
    rows = penalty_report(backbone).rows
    assert {(r.fan_in, r.fan_out) for r in rows} == set(
        EXPECTED_FANS[name].values()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attached = attach_regularizer(backbone, ScaledL2(0.01))
    tables = {
        w.path
        for layer in _layers(backbone)
        if isinstance(layer, keras.layers.Embedding)
        for w in [layer.embeddings]
    }
    # By default the Embedding tables too (KerasHub's PositionEmbedding is
    # not an Embedding, and is left alone).
    assert sorted(attached) == sorted(matmuls | tables)


def test_report_names_layers_and_says_what_restores_each_penalty():
    backbone = _build("bert")
    with pytest.warns(UserWarning, match="keras_scaled_l2.load_model"):
        attach_regularizer(backbone, ScaledL2(0.01), include_embeddings=False)
    report = penalty_report(backbone)
    rows = {row.layer: row for row in report.rows}
    query = rows["transformer_layer_0/self_attention_layer/query"]
    assert (query.shape, query.fan_in, query.fan_out) == ((8, 2, 4), 8, 8)
    assert {row.reload for row in report.rows} == {"package"}
    assert report.total == pytest.approx(
        float(keras.ops.convert_to_numpy(keras.ops.sum(backbone.losses))),
        rel=1e-6,
    )
    assert "come back only with keras_scaled_l2.load_model" in str(report)


def _classifier():
    """A BERT backbone under a functional head, as users fine-tune one."""
    backbone = _build("bert")
    inputs = backbone.input
    pooled = backbone(inputs)["pooled_output"]
    outputs = keras.layers.Dense(1, name="head")(pooled)
    return keras.Model(inputs, outputs, name="classifier")


def _token_data(rows=32):
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(0, 50, size=(rows, 8)),
        "segment_ids": np.zeros((rows, 8), "int32"),
        "padding_mask": np.ones((rows, 8), "int32"),
    }
    y = rng.normal(size=(rows, 1)).astype("float32")
    return x, y


def test_penalty_logger_per_layer_names_the_transformer_layers():
    model = _classifier()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attach_regularizer(model, ScaledL2(0.1), include_embeddings=False)
    model.compile(keras.optimizers.Adam(1e-3), "mse", metrics=["mse"])
    x, y = _token_data()
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        validation_split=0.25,
        verbose=0,
        callbacks=[PenaltyLogger(per_layer=True)],
    ).history
    assert_parts_exact(history)
    keys = {k for k in history if k.startswith("penalty/")}
    backbone = model.get_layer(index=3).name  # bert_backbone, numbered
    assert {
        "penalty/head",
        f"penalty/{backbone}/transformer_layer_1/self_attention_layer/value",
        f"penalty/{backbone}/transformer_layer_0/feedforward_output_dense",
    } <= keys
    # Under evaluate, each layer's penalty is its kernels' float64 reference
    # with their true fans (query, key, value: (hidden, heads, head_dim)).
    logs = model.evaluate(
        x,
        y,
        verbose=0,
        return_dict=True,
        callbacks=[PenaltyLogger(per_layer=True)],
    )
    fans = {**EXPECTED_FANS["bert"], ("head", "kernel"): (8, 1)}
    checked = 0
    for name, layer in _named_layers(model):
        if getattr(layer, "kernel", None) is None:
            continue
        fan_in, fan_out = fans[(layer.name, "kernel")]
        values = keras.ops.convert_to_numpy(layer.kernel).astype("float64")
        want = (
            0.1
            * reference_scale(fan_in, fan_out, values.size, "balanced")
            * np.sum(values**2)
        )
        assert logs[f"penalty/{name}"] == pytest.approx(want, rel=1e-5), name
        checked += 1
    assert checked == 14  # 2 x (4 projections + 2 dense), pooler, head


def _named_layers(model, prefix=""):
    """`(name chain below model, layer)` for every layer under `model`."""
    for child in _keras_internals.sublayers(model):
        name = f"{prefix}{child.name}"
        yield name, child
        yield from _named_layers(child, name + "/")


RELOAD = textwrap.dedent(
    """
    import json, sys
    import keras
    import keras_hub
    import keras_scaled_l2
    from keras_scaled_l2 import load_model, penalty_report

    def penalties(model):
        weights = [w for w in model.trainable_weights if w.regularizer]
        losses = model.losses[len(model.losses) - len(weights):]
        return {w.path: float(p) for w, p in zip(weights, losses)}

    def starts(model):
        return [
            w.regularizer.anchor_values().tolist()
            for w in model.trainable_weights
            if getattr(w.regularizer, "anchored", False)
        ]

    out = {}
    for path in sys.argv[1:]:
        plain = keras.models.load_model(path)
        ours = load_model(path)
        resaved = path + ".again.keras"
        ours.save(resaved)
        out[path] = {
            "keras": penalties(plain),
            "package": penalties(ours),
            "reload": sorted({r.reload for r in penalty_report(ours).rows}),
            "again": penalties(load_model(resaved)),
            "starts": starts(ours),
        }
    print(json.dumps(out))
    """
)


def _factor_per_block(layer, weight):
    """A different factor in each transformer block, the same within it,
    so that a penalty restored on another block's kernel shows."""
    block = re.search(r"(?:layer|block)_(\d+)/", weight.path)
    return ScaledL2(0.01 * (2 + int(block.group(1))) if block else 0.05)


def _toward_the_start(model):
    """L2-SP on the backbone, toward zero on the head; then the weights
    move, so that each starting-point penalty is the distance moved."""
    backbone = model.get_layer(index=3).name
    attach_regularizer(model, ScaledL2(0.05), anchor=backbone)
    for weight in model.trainable_weights:
        weight.assign(weight * 1.25)


def test_every_penalty_comes_back_in_a_fresh_process(tmp_path):
    models = {name: _build(name) for name in ("gpt2", "llama", "gemma")}
    models["classifier"] = _classifier()
    models["classifier_toward_start"] = _classifier()
    saved = {}
    for name, model in models.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if name == "classifier_toward_start":
                _toward_the_start(model)
            else:
                attach_regularizer(model, _factor_per_block)
        path = str(tmp_path / f"{name}.keras")
        model.save(path)
        starts = [
            w.regularizer.anchor_values()
            for w in model.trainable_weights
            if getattr(w.regularizer, "anchored", False)
        ]
        saved[path] = (name, _computed_penalties(model), starts)
    reloaded = run_json(["-c", RELOAD, *saved])
    for path, (name, before, starts) in saved.items():
        got = reloaded[path]
        # Starting weights, float32 through JSON: exactly those saved.
        assert bool(starts) == (name == "classifier_toward_start")
        assert len(got["starts"]) == len(starts), name
        for start, saved_start in zip(got["starts"], starts, strict=True):
            np.testing.assert_array_equal(start, saved_start)
        want = list(before.values())
        # Every kernel's penalty, on the same kernels, with both reloads.
        assert len(got["package"]) == len(before), name
        np.testing.assert_allclose(
            list(got["package"].values()), want, rtol=1e-6
        )
        np.testing.assert_allclose(list(got["again"].values()), want, rtol=1e-6)
        # What keras.models.load_model alone restores: only what a saved
        # config carries (the functional head), as the warning said.
        head = name.startswith("classifier")
        assert sorted(got["keras"]) == (["head/kernel"] if head else []), name
        assert got["reload"] == (["keras", "package"] if head else ["package"])
