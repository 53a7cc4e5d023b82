import csv
import gc
import json
import subprocess
import sys
import textwrap
import warnings
import weakref
import zipfile

import keras
import numpy as np
import pytest
from logged import assert_parts_exact
from reference import reference_penalty
from seen_train_function import SeenTrainFunction

from keras_scaled_l2 import CollapseMonitor, PenaltyLogger, ScaledL1, ScaledL2

ROWS, FEATURES = 1000, 20


def _data(rows=ROWS, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES)).astype("float32")
    y = (x[:, :1] * 0.5 + rng.normal(size=(rows, 1))).astype("float32")
    return x, y


def _model(kernel_regularizer=None, steps_per_execution=1, optimizer=None):
    """Two Dense layers under L2(0.1): the penalty falls fast with Adam."""
    keras.utils.set_random_seed(0)
    regularizer = kernel_regularizer or keras.regularizers.L2(0.1)
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(
                64, activation="relu", kernel_regularizer=regularizer
            ),
            keras.layers.Dense(1, kernel_regularizer=ScaledL2(0.1)),
        ]
    )
    model.compile(
        optimizer or keras.optimizers.Adam(1e-2),
        "mse",
        metrics=["mse"],
        steps_per_execution=steps_per_execution,
    )
    return model


def _fit(model, callbacks, epochs=3, **kwargs):
    x, y = _data()
    kwargs = {"batch_size": 64, "validation_split": 0.2, **kwargs}
    return model.fit(
        x, y, epochs=epochs, callbacks=callbacks, verbose=0, **kwargs
    ).history


def _assert_exact(history):
    assert_parts_exact(history)
    assert np.all(np.array(history["penalty"]) > 0)


def test_parts_are_exact_with_partial_batches_and_a_falling_penalty():
    # 800 training rows in batches of 64: the last batch has 32 rows, and
    # the penalty drops by a factor of ten within the three epochs.
    history = _fit(_model(), [PenaltyLogger()])
    _assert_exact(history)
    assert history["penalty"][-1] < 0.2 * history["penalty"][0]


def test_parts_are_exact_with_steps_per_execution():
    if keras.backend.backend() == "torch":
        # Keras refuses steps_per_execution > 1 on PyTorch; the logger
        # must let that error through unchanged.
        for callbacks in ([], [PenaltyLogger()]):
            with pytest.raises(ValueError, match="steps_per_execution"):
                _fit(_model(steps_per_execution=4), callbacks)
        return
    history = _fit(_model(steps_per_execution=4), [PenaltyLogger()])
    _assert_exact(history)


def test_logging_does_not_change_training():
    with_logger = _model()
    _fit(with_logger, [PenaltyLogger(per_layer=True)])
    without = _model()
    _fit(without, [])
    # Exact: the logger only reads; a claim of bit-identical training.
    for a, b in zip(with_logger.weights, without.weights, strict=True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        )


def test_penalty_of_a_model_without_regularizers_is_zero():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse", metrics=["mse"])
    history = _fit(model, [PenaltyLogger()], epochs=1)
    # Exact: no penalty term exists, so nothing is added to the loss.
    assert history["penalty"] == [0.0]
    assert history["val_penalty"] == [0.0]
    np.testing.assert_allclose(history["data_loss"], history["loss"], rtol=0)


def _composite_model():
    """Nested model, a shared layer, an activity regularizer, add_loss."""
    inner = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(
                8, name="inner_dense", kernel_regularizer=ScaledL1(0.05)
            ),
        ],
        name="inner",
    )
    shared = keras.layers.Dense(
        8, name="shared", kernel_regularizer=keras.regularizers.L2(0.02)
    )

    class AddLoss(keras.layers.Layer):
        def call(self, x):
            self.add_loss(0.01 * keras.ops.mean(keras.ops.square(x)))
            return x

    inputs = keras.Input((FEATURES,))
    branches = [inner(inputs), shared(inputs), shared(inputs)]
    x = keras.layers.Concatenate()(branches)
    x = keras.layers.Dense(
        4, name="frozen", kernel_regularizer=keras.regularizers.L2(1.0)
    )(x)
    x = AddLoss()(x)
    outputs = keras.layers.Dense(
        1,
        name="head",
        kernel_regularizer=ScaledL2(0.1),
        activity_regularizer=keras.regularizers.L2(0.001),
    )(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("frozen").trainable = False  # Keras drops its penalty
    model.compile("adam", "mse", metrics=["mse"])
    return model


def test_per_layer_keys_sum_to_the_penalty_and_count_shared_weights_once():
    keras.utils.set_random_seed(0)
    model = _composite_model()
    history = _fit(model, [PenaltyLogger(per_layer=True)], epochs=2)
    _assert_exact(history)
    for prefix in ("", "val_"):
        keys = sorted(k for k in history if k.startswith(f"{prefix}penalty/"))
        assert keys == [
            f"{prefix}penalty/(other)",
            f"{prefix}penalty/head",
            f"{prefix}penalty/inner/inner_dense",
            f"{prefix}penalty/shared",
        ]
        total = np.sum([history[k] for k in keys], axis=0)
        np.testing.assert_allclose(
            total, history[f"{prefix}penalty"], rtol=1e-6
        )
        assert np.all(np.array(history[f"{prefix}penalty/(other)"]) > 0)


def test_per_layer_penalties_match_a_numpy_reference_under_evaluate():
    keras.utils.set_random_seed(0)
    model = _composite_model()
    x, y = _data(200)
    logs = model.evaluate(
        x,
        y,
        batch_size=64,
        verbose=0,
        return_dict=True,
        callbacks=[PenaltyLogger(per_layer=True)],
    )

    def kernel(name, inner=False):
        owner = model.get_layer("inner") if inner else model
        return keras.ops.convert_to_numpy(owner.get_layer(name).kernel)

    expected = {
        "penalty/inner/inner_dense": reference_penalty(
            kernel("inner_dense", inner=True), l1=0.05
        ),
        "penalty/shared": reference_penalty(
            kernel("shared"), l2=0.02, scale="none"
        ),
        "penalty/head": reference_penalty(kernel("head"), l2=0.1),
    }
    for key, value in expected.items():
        assert logs[key] == pytest.approx(value, rel=1e-5), key
    assert logs["penalty"] == pytest.approx(
        sum(expected.values()) + logs["penalty/(other)"], rel=1e-6
    )
    assert logs["data_loss"] == pytest.approx(logs["mse"], rel=1e-5)


def test_keys_reach_csv_logger_and_history_wherever_the_logger_stands(
    tmp_path,
):
    path = tmp_path / "log.csv"
    callbacks = [keras.callbacks.CSVLogger(str(path)), PenaltyLogger()]
    history = _fit(_model(), callbacks, epochs=2)
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for key in ("data_loss", "penalty", "val_data_loss", "val_penalty"):
        np.testing.assert_allclose(
            [float(row[key]) for row in rows], history[key], rtol=1e-6
        )


def test_keys_reach_tensorboard(tmp_path):
    import tensorflow as tf  # a dependency of the package; writes the logs

    callbacks = [keras.callbacks.TensorBoard(str(tmp_path)), PenaltyLogger()]
    history = _fit(_model(), callbacks, epochs=2)
    scalars = {}
    for event_file in (tmp_path / "train").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                if not value.tag.startswith("epoch_"):
                    continue
                scalars.setdefault(value.tag, []).append(
                    float(tf.make_ndarray(value.tensor))
                )
    np.testing.assert_allclose(
        scalars["epoch_data_loss"], history["data_loss"], rtol=1e-6
    )
    np.testing.assert_allclose(
        scalars["epoch_penalty"], history["penalty"], rtol=1e-6
    )


@pytest.mark.parametrize("verbose", [1, 2])
def test_keys_reach_the_progress_bar(capsys, verbose):
    x, y = _data(256)
    _model().fit(
        x,
        y,
        epochs=1,
        batch_size=64,
        verbose=verbose,
        callbacks=[PenaltyLogger()],
        validation_split=0.25,
    )
    out = capsys.readouterr().out
    for key in ("data_loss: ", "penalty: ", "val_data_loss: ", "val_penalty: "):
        assert key in out


def test_one_instance_across_fits_and_a_recompile():
    model, logger = _model(), PenaltyLogger()
    first = _fit(model, [logger], epochs=1)
    second = _fit(model, [logger], epochs=1)
    model.compile(keras.optimizers.SGD(1e-3), "mse", metrics=["mse"])
    third = _fit(model, [logger], epochs=1)
    for history in (first, second, third):
        _assert_exact(history)
    assert third["penalty"][0] < first["penalty"][0]


@pytest.mark.parametrize("fresh_logger", [False, True], ids=["same", "new"])
def test_repeated_fits_reuse_their_step_functions(fresh_logger):
    # Attaching and detaching swap the traced step functions rather than
    # tracing new ones, unless the model was compiled again; a new logger
    # per fit (walk-forward retraining) reuses them as the same one does.
    model, seen = _model(), SeenTrainFunction()
    logger = PenaltyLogger()

    def logged():
        return [PenaltyLogger() if fresh_logger else logger]

    histories = [
        _fit(model, [*callbacks, seen], epochs=1)
        for callbacks in (logged(), [], logged(), [], logged())
    ]
    logged_1, plain_1, logged_2, plain_2, logged_3 = seen.seen
    assert logged_1 is logged_2 is logged_3
    assert plain_1 is plain_2
    assert logged_1 is not plain_1
    for history in histories[::2]:
        _assert_exact(history)
    # A logger with another `per_layer` needs its own step functions.
    _fit(model, [PenaltyLogger(per_layer=True), seen], epochs=1)
    assert seen.seen[-1] not in (logged_1, plain_1)
    model.compile("sgd", "mse", metrics=["mse"])
    _fit(model, [*logged(), seen], epochs=1)
    assert seen.seen[-1] is not logged_1


def test_two_loggers_in_one_fit_share_one_session_and_leave_the_model():
    model = _model()
    names = [m.name for m in model.metrics]
    history = _fit(model, [PenaltyLogger(), PenaltyLogger()], epochs=1)
    _assert_exact(history)
    assert [m.name for m in model.metrics] == names
    assert "compute_loss" not in vars(model)
    # No step function traced with the logger is left on the model.
    assert (model.train_function, model.test_function) == (None, None)
    assert sorted(_fit(model, [], epochs=1)) == [
        "loss",
        "mse",
        "val_loss",
        "val_mse",
    ]


def test_a_model_with_a_logger_is_garbage_collected():
    # The traced step functions hold the model; kept beside it, they
    # would keep every model a logger ever saw alive.
    model = _model()
    _fit(model, [PenaltyLogger()], epochs=1)
    collected = weakref.ref(model)
    del model
    gc.collect()
    assert collected() is None


def test_model_is_left_as_it_was_after_fit_evaluate_and_predict():
    model = _model()
    names = [m.name for m in model.metrics]
    x, y = _data(128)
    _fit(model, [PenaltyLogger()], epochs=1)
    assert [m.name for m in model.metrics] == names
    assert "compute_loss" not in vars(model)
    without = model.evaluate(x, y, verbose=0, return_dict=True)
    assert sorted(without) == ["loss", "mse"]
    with_logger = model.evaluate(
        x, y, verbose=0, return_dict=True, callbacks=[PenaltyLogger()]
    )
    assert with_logger["loss"] == pytest.approx(without["loss"], rel=1e-6)
    assert with_logger["data_loss"] == pytest.approx(without["mse"], rel=1e-5)
    predictions = model.predict(x, verbose=0, callbacks=[PenaltyLogger()])
    np.testing.assert_allclose(
        predictions, model.predict(x, verbose=0), rtol=1e-6
    )
    assert [m.name for m in model.metrics] == names
    assert "compute_loss" not in vars(model)


class _RaiseAtBatch(keras.callbacks.Callback):
    def __init__(self, error):
        super().__init__()
        self.error = error

    def on_train_batch_end(self, batch, logs=None):
        if batch == 2:
            raise self.error


class _FailingRows(keras.utils.PyDataset):
    """Batches of `_data()` whose third raises, as a broken file would."""

    def __len__(self):
        return 10

    def __getitem__(self, index):
        if index == 2:
            raise OSError("row file unreadable")
        rows = slice(index * 64, (index + 1) * 64)
        x, y = _data()
        return x[rows], y[rows]


@pytest.mark.parametrize("ending", ["callback", "interrupt", "data"])
def test_a_fit_that_raises_leaves_the_model_as_it_was_found(ending):
    # Keras skips `on_train_end` when `fit` raises: the logger's step
    # functions, metric and `compute_loss` stay on the model until the
    # next step without a logger, which must log no `data_loss`.
    model = _model()
    names = [m.name for m in model.metrics]
    x, y = _data()
    logger = PenaltyLogger()
    callbacks = [logger, CollapseMonitor(x[:64])]
    data = {"x": x, "y": y, "batch_size": 64}
    if ending == "callback":
        callbacks.append(_RaiseAtBatch(RuntimeError("a callback failed")))
    elif ending == "interrupt":
        callbacks.append(_RaiseAtBatch(KeyboardInterrupt()))
    else:
        data = {"x": _FailingRows()}
    with pytest.raises((RuntimeError, KeyboardInterrupt, Exception)):
        model.fit(**data, epochs=2, callbacks=callbacks, verbose=0)

    later = _fit(model, [], epochs=1)
    assert sorted(later) == ["loss", "mse", "val_loss", "val_mse"]
    assert [m.name for m in model.metrics] == names
    assert "compute_loss" not in vars(model)
    plain = model.evaluate(x, y, verbose=0, return_dict=True)
    assert sorted(plain) == ["loss", "mse"]
    # The same logger logs exactly again, in `evaluate` and in `fit`, and
    # leaves the model after each.
    scores = model.evaluate(
        x, y, verbose=0, return_dict=True, callbacks=[logger]
    )
    assert scores["data_loss"] == pytest.approx(plain["mse"], rel=1e-5)
    assert sorted(model.evaluate(x, y, verbose=0, return_dict=True)) == [
        "loss",
        "mse",
    ]
    _assert_exact(_fit(model, [logger], epochs=1))
    assert sorted(_fit(model, [], epochs=1)) == sorted(later)


def test_a_callbacks_own_evaluate_inside_a_logged_fit_keeps_the_logger():
    # The `evaluate` a callback runs inside `fit` has no logger of its own;
    # the fit's logger stays attached through it, and leaves afterwards.
    x, y = _data(128)
    seen = []

    class EvaluateEachEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(self.model.evaluate(x, y, verbose=0, return_dict=True))

    model = _model()
    history = _fit(model, [EvaluateEachEpoch(), PenaltyLogger()], epochs=2)
    _assert_exact(history)
    for scores in seen:
        assert scores["data_loss"] == pytest.approx(scores["mse"], rel=1e-5)
    assert sorted(model.evaluate(x, y, verbose=0, return_dict=True)) == [
        "loss",
        "mse",
    ]


RETRAIN_IN_FRESH_PROCESS = textwrap.dedent(
    """
    import sys, warnings
    warnings.simplefilter("error")
    import keras, numpy as np
    import keras_scaled_l2
    for path in sys.argv[1:]:
        model = keras.models.load_model(path)
        x = np.ones((32, 20), "float32")
        history = model.fit(x, np.zeros((32, 1)), epochs=1, verbose=0)
        print(sorted(history.history))
    """
)


def test_saved_model_carries_no_trace_of_the_logger(tmp_path):
    model = _model()
    checkpoint = tmp_path / "during.keras"
    _fit(
        model,
        [
            PenaltyLogger(per_layer=True),
            keras.callbacks.ModelCheckpoint(str(checkpoint)),
        ],
        epochs=1,
    )
    after = tmp_path / "after.keras"
    model.save(after)
    for path in (checkpoint, after):
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            weights = archive.read("model.weights.h5")
        assert "penalty_logger" not in json.dumps(config)
        assert b"penalty_logger" not in weights
        assert b"totals" not in weights  # the logger's one variable
    # Both reload and train in a fresh process, with its own metrics only.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            RETRAIN_IN_FRESH_PROCESS,
            str(checkpoint),
            str(after),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-2:] == ["['loss', 'mse']"] * 2


def test_per_layer_must_be_a_bool():
    with pytest.raises(ValueError) as error:
        PenaltyLogger(per_layer="yes")
    assert str(error.value) == (
        "Invalid value for argument `per_layer`: expected True or False. "
        "Received: per_layer='yes'"
    )


def test_a_model_overriding_compute_loss_is_refused_with_a_warning():
    class OwnLoss(keras.Model):
        def compute_loss(self, x, y, y_pred, sample_weight, training=True):
            return keras.ops.mean(keras.ops.square(y - y_pred))

    inputs = keras.Input((FEATURES,))
    model = OwnLoss(inputs, keras.layers.Dense(1)(inputs))
    model.compile("sgd", metrics=["mse"])
    with pytest.warns(UserWarning, match="overrides `compute_loss`"):
        history = _fit(model, [PenaltyLogger()], epochs=1)
    assert "penalty" not in history
    assert "data_loss" not in history


def test_a_train_step_that_never_calls_compute_loss_logs_nothing():
    class OwnStep(keras.Model):
        # The train_step signature is the backend's; neither calls
        # compute_loss.
        if keras.backend.backend() == "jax":

            def train_step(self, state, data):
                return {"constant": 0.0}, state

        else:

            def train_step(self, data):
                return {"constant": 0.0}

    inputs = keras.Input((FEATURES,))
    model = OwnStep(inputs, keras.layers.Dense(1)(inputs))
    model.compile("sgd", "mse")
    x, y = _data(128)
    with pytest.warns(UserWarning, match="recorded nothing"):
        history = model.fit(
            x, y, epochs=3, verbose=0, callbacks=[PenaltyLogger()]
        ).history
    assert len(history["constant"]) == 3
    assert "penalty" not in history
    assert "data_loss" not in history


def test_no_warning_for_an_ordinary_model():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(_model(), [PenaltyLogger(per_layer=True)], epochs=1)
    assert not [w for w in caught if "PenaltyLogger" in str(w.message)]
