import json
import textwrap

import keras
import numpy as np
import pytest
from fresh_process import run_json
from project_paths import DATA
from round_trip import assert_serialization_round_trips
from saved_models import INPUT_SHAPE, REGULARIZER_CLASSES, regularized_model

from keras_scaled_l2 import SCALES, ScaledL1, ScaledL1L2, ScaledL2

CONFIGURED = [
    ScaledL2(),
    ScaledL2(0.5, scale="none"),
    ScaledL2(0.01, scale="fan_in", num_examples=1000),
    ScaledL1(0.02, scale="size", input_axes=(0,), output_axes=(1, 2)),
    ScaledL1L2(l1=0.1, l2=0.2, scale="fan_out", num_examples=7),
    ScaledL1L2(l2=0.3, input_axes=[-3], output_axes=[-2, -1]),
    ScaledL2(0.001, scale="none", num_kernels=9),
]


@pytest.mark.parametrize("regularizer", CONFIGURED, ids=repr)
def test_config_and_serialization_round_trips(regularizer):
    restored = assert_serialization_round_trips(regularizer)
    kernel = np.random.default_rng(0).normal(size=(6, 5, 4)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(kernel)),
        keras.ops.convert_to_numpy(regularizer(kernel)),
        rtol=0,
    )


@pytest.mark.parametrize("scale", sorted(SCALES))
@pytest.mark.parametrize("cls", [ScaledL2, ScaledL1, ScaledL1L2])
def test_every_class_and_scale_round_trips(cls, scale):
    assert_serialization_round_trips(cls(scale=scale))


def test_config_holds_plain_python_types():
    config = ScaledL1L2(
        l1=np.float32(0.5),
        l2=1,
        num_examples=np.int64(3),
        input_axes=(np.int64(0),),
        output_axes=(1,),
        num_kernels=np.int64(5),
    ).get_config()
    assert config == {
        "l1": 0.5,
        "l2": 1.0,
        "scale": "balanced",
        "num_examples": 3,
        "input_axes": [0],
        "output_axes": [1],
        "num_kernels": 5,
        "anchor": None,
    }
    assert [
        type(config[k]) for k in ("l1", "l2", "num_examples", "num_kernels")
    ] == [float, float, int, int]
    assert type(config["input_axes"][0]) is int


@pytest.mark.parametrize(
    "name, cls",
    [
        ("ScaledL2", ScaledL2),
        ("ScaledL1", ScaledL1),
        ("ScaledL1L2", ScaledL1L2),
    ],
)
def test_registered_under_the_package_name(name, cls):
    assert keras.saving.get_registered_name(cls) == f"keras_scaled_l2>{name}"
    assert keras.saving.get_registered_object(f"keras_scaled_l2>{name}") is cls


def _model():
    model = regularized_model()
    rng = np.random.default_rng(0)
    # A loss object, not the string "mse": Keras cannot reload a legacy .h5
    # file compiled with loss="mse", with or without this package.
    model.compile("adam", keras.losses.MeanSquaredError())
    model.fit(
        rng.normal(size=(32, *INPUT_SHAPE)),
        rng.normal(size=(32, 1)),
        epochs=1,
        verbose=0,
    )
    return model


SAVED_BY_0_1_0 = DATA
OLD_FILES = [
    str(SAVED_BY_0_1_0 / f"saved_by_0.1.0{s}") for s in (".keras", ".h5")
]

# One fresh process reloads every file of this module: the two saved here
# (predictions, penalties, regularizer classes) and the two saved by 0.1.0
# (penalties by weight path).
RELOAD_IN_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import keras
    import numpy as np
    import keras_scaled_l2

    x = np.load(sys.argv[1])
    new_files, old_files = sys.argv[2:4], sys.argv[4:]
    reloaded = {}
    for path in new_files:
        model = keras.models.load_model(path)
        reloaded[path] = {
            "predictions": keras.ops.convert_to_numpy(model(x)).tolist(),
            "penalties": [float(p) for p in model.losses],
            "regularizers": [
                type(w.regularizer).__module__ + "."
                + type(w.regularizer).__name__
                for w in model.trainable_weights if w.regularizer is not None
            ],
        }
    for path in old_files:
        reloaded[path] = {
            w.path: float(w.regularizer(w))
            for w in keras.models.load_model(path).weights
            if w.regularizer is not None
        }
    print(json.dumps(reloaded))
    """
)


@pytest.fixture(scope="module")
def saved_and_reloaded(tmp_path_factory):
    """The model saved here as .keras and .h5, the input, and every file of
    this module as a fresh process reloads it."""
    folder = tmp_path_factory.mktemp("saved")
    model = _model()
    x = np.random.default_rng(1).normal(size=(5, 4, 16)).astype("float32")
    np.save(folder / "x.npy", x)
    paths = {}
    for extension in (".keras", ".h5"):
        paths[extension] = str(folder / f"model{extension}")
        model.save(paths[extension])
    reloaded = run_json(
        [
            "-c",
            RELOAD_IN_FRESH_PROCESS,
            str(folder / "x.npy"),
            paths[".keras"],
            paths[".h5"],
            *OLD_FILES,
        ]
    )
    return model, x, paths, reloaded


@pytest.mark.parametrize("extension", [".keras", ".h5"])
def test_saved_model_reloads_in_a_fresh_process(saved_and_reloaded, extension):
    model, x, paths, reloaded = saved_and_reloaded
    got = reloaded[paths[extension]]
    np.testing.assert_allclose(
        got["predictions"],
        keras.ops.convert_to_numpy(model(x)),
        rtol=1e-6,
        atol=1e-7,
    )
    np.testing.assert_allclose(
        got["penalties"], [float(p) for p in model.losses], rtol=1e-6
    )
    assert got["regularizers"] == REGULARIZER_CLASSES


def test_models_saved_by_0_1_0_reload_with_their_penalties(saved_and_reloaded):
    # Saved by version 0.1.0 with Keras 3.10 (the lowest declared), before
    # `num_kernels` existed; that version recorded the penalties it saved.
    recorded = json.loads((SAVED_BY_0_1_0 / "saved_by_0.1.0.json").read_text())[
        "penalties"
    ]
    *_, reloaded = saved_and_reloaded
    for path in OLD_FILES:
        assert sorted(reloaded[path]) == sorted(recorded)
        for name, penalty in recorded.items():
            # Recomputed from the same float32 weights: equal up to the
            # last bits that another processor's kernels may round
            # differently.
            assert reloaded[path][name] == pytest.approx(
                penalty, rel=1e-5, abs=1e-12
            )
