"""Trains one model on one device and on two, prints both as JSON.

Run as a script, in its own process, since the devices must be configured
before the backend starts:

    python distributed_training.py mirrored|data_parallel|model_parallel

`model_parallel` shards the two hidden kernels across the two devices with
a `LayoutMap` (the first by columns, the second by rows). The first hidden
layer's and the head's penalties pull toward their starting weights,
attached inside the strategy's scope (or under the distribution) as a user
would; the output says how each kernel and its starting weights are
placed, and the bytes of starting weights each device holds.
"""

import json
import os
import sys

if __name__ != "__main__":
    raise ImportError("distributed_training.py is a script, not a module.")

ENGINE = sys.argv[1]
if ENGINE == "mirrored":
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
else:
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_scaled_l2 import (  # noqa: E402
    PenaltyLogger,
    ScaledL1L2,
    ScaledL2,
    attach_regularizer,
)


def build():
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(
                64,
                name="dense",
                activation="relu",
                kernel_initializer=keras.initializers.GlorotUniform(seed=1),
            ),
            keras.layers.Dense(
                32,
                name="middle",
                activation="relu",
                kernel_regularizer=ScaledL2(0.1),
                bias_regularizer=keras.regularizers.L2(0.05),
                kernel_initializer=keras.initializers.GlorotUniform(seed=2),
            ),
            keras.layers.Dense(
                1,
                name="head",
                kernel_initializer=keras.initializers.GlorotUniform(seed=3),
            ),
        ]
    )
    attach_regularizer(
        model,
        ScaledL1L2(0.01, 0.1, scale="fan_in"),
        include=["dense", "head"],
        anchor=True,
    )
    model.compile(keras.optimizers.SGD(0.05), "mse", metrics=["mse"])
    return model


def train(distributed):
    devices = 1
    if distributed and ENGINE == "mirrored":
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        devices = strategy.num_replicas_in_sync
        with strategy.scope():
            model = build()
    elif distributed:
        distribution = _jax_distribution()
        devices = len(distribution.device_mesh.devices.ravel())
        keras.distribution.set_distribution(distribution)
        model = build()
    else:
        model = build()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 20)).astype("float32")
    y = (x[:, :1] + rng.normal(size=(1000, 1))).astype("float32")
    history = model.fit(
        x,
        y,
        batch_size=64,
        epochs=3,
        validation_split=0.2,
        shuffle=False,
        verbose=0,
        callbacks=[PenaltyLogger(per_layer=True)],
    ).history
    if distributed and ENGINE != "mirrored":
        keras.distribution.set_distribution(None)
    weights = [keras.ops.convert_to_numpy(w).tolist() for w in model.weights]
    return {
        "devices": devices,
        "history": history,
        "weights": weights,
        "shards": _shard_shapes(model),
        "placement": _placement(model),
        "start_bytes": _start_bytes_per_device(model),
    }


def _jax_distribution():
    import jax

    if ENGINE == "data_parallel":
        return keras.distribution.DataParallel(devices=jax.devices())
    mesh = keras.distribution.DeviceMesh(
        (1, 2), axis_names=("batch", "model"), devices=jax.devices()
    )
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map[".*dense/kernel"] = (None, "model")
    layout_map[".*middle/kernel"] = ("model", None)
    return keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch"
    )


def _shard_shapes(model):
    """The shape of each device's part of each hidden kernel (JAX only)."""
    if keras.backend.backend() != "jax":
        return {}
    return {
        layer.name: sorted(
            list(shard.data.shape)
            for shard in layer.kernel.value.addressable_shards
        )
        for layer in model.layers[:2]
    }


def _anchored(model):
    return [
        layer
        for layer in model.layers
        if getattr(layer.kernel.regularizer, "anchored", False)
    ]


def _placed(variable):
    """How a variable's value is placed: its sharding (JAX), or its
    distributed class and number of components (TensorFlow)."""
    value = variable.value
    if keras.backend.backend() == "jax":
        return str(getattr(value.sharding, "spec", value.sharding))
    return [type(value).__name__, len(getattr(value, "values", [value]))]


def _placement(model):
    """Per anchored layer: `[kernel's placement, starting weights']`."""
    return {
        layer.name: [
            _placed(layer.kernel),
            _placed(layer.kernel.regularizer._anchor),
        ]
        for layer in _anchored(model)
    }


def _start_bytes_per_device(model):
    """Bytes of starting weights on each device."""
    per_device = {}
    for layer in _anchored(model):
        value = layer.kernel.regularizer._anchor.value
        if keras.backend.backend() == "jax":
            parts = [
                (str(s.device), s.data.nbytes) for s in value.addressable_shards
            ]
        else:
            parts = [
                (part.device, int(np.prod(part.shape)) * part.dtype.size)
                for part in getattr(value, "values", [value])
            ]
        for device, size in parts:
            per_device[device] = per_device.get(device, 0) + size
    return per_device


print(json.dumps({"single": train(False), "distributed": train(True)}))
