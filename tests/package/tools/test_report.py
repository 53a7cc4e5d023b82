import importlib.util
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from command_line import run_in_process
from quiet import as_a_user_runs_it, assert_no_native_log_lines
from reference import reference_penalty

from keras_scaled_l2 import (
    SCALES,
    ScaledL1,
    ScaledL1L2,
    ScaledL2,
    attach_regularizer,
    penalty_report,
)


def _model():
    keras.utils.set_random_seed(0)
    inner = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(
                1024,
                name="wide",
                kernel_regularizer=keras.regularizers.L2(0.01),
            ),
        ],
        name="inner",
    )
    inputs = keras.Input((784,))
    x = inner(inputs)
    x = keras.layers.Dense(
        256, name="middle", kernel_regularizer=ScaledL2(0.01)
    )(x)
    x = keras.layers.BatchNormalization(name="norm")(x)
    outputs = keras.layers.Dense(
        10, name="last", kernel_regularizer=ScaledL1(0.01, scale="fan_in")
    )(x)
    return keras.Model(inputs, outputs, name="report_me")


def _kernel(model, *names):
    layer = model
    for name in names:
        layer = layer.get_layer(name)
    return keras.ops.convert_to_numpy(layer.kernel)


def test_rows_against_a_numpy_reference_and_keras_losses():
    model = _model()
    report = penalty_report(model)
    wide = _kernel(model, "inner", "wide")
    middle = _kernel(model, "middle")
    last = _kernel(model, "last")
    expected = [
        (
            "inner/wide",
            (784, 1024),
            784,
            1024,
            "none",
            reference_penalty(wide, l2=0.01, scale="none"),
        ),
        (
            "middle",
            (1024, 256),
            1024,
            256,
            "balanced",
            reference_penalty(middle, l2=0.01),
        ),
        (
            "last",
            (256, 10),
            256,
            10,
            "fan_in",
            reference_penalty(last, l1=0.01, scale="fan_in"),
        ),
    ]
    assert len(report.rows) == 3
    for row, (layer, shape, fan_in, fan_out, scale, penalty) in zip(
        report.rows, expected, strict=True
    ):
        assert (row.layer, row.weight, row.shape) == (layer, "kernel", shape)
        assert (row.fan_in, row.fan_out, row.scale) == (fan_in, fan_out, scale)
        assert row.penalty == pytest.approx(penalty, rel=1e-5)
    assert sum(r.share for r in report.rows) == pytest.approx(1.0)
    assert report.total == pytest.approx(
        float(keras.ops.sum(model.losses)), rel=1e-6
    )
    # The wide layer holds nearly all of the plain-L2 total.
    assert report.rows[0].share > 0.95


def test_what_if_table_under_every_scale():
    model = _model()
    report = penalty_report(model, l2=0.01)
    assert [r.layer for r in report.what_if] == ["inner/wide", "middle", "last"]
    kernels = [
        _kernel(model, "inner", "wide"),
        _kernel(model, "middle"),
        _kernel(model, "last"),
    ]
    for scale in SCALES:
        want = [reference_penalty(k, l2=0.01, scale=scale) for k in kernels]
        got = [r.penalties[scale] for r in report.what_if]
        np.testing.assert_allclose(got, want, rtol=1e-9)
        shares = [r.shares[scale] for r in report.what_if]
        np.testing.assert_allclose(shares, np.array(want) / sum(want))
    # Under the balanced scale every Glorot kernel weighs about the same.
    balanced = [r.shares["balanced"] for r in report.what_if]
    assert max(balanced) < 0.4
    text = str(report)
    assert "L2 penalty with factor 0.01 under each scale" in text
    assert "inner/wide" in text and "balanced" in text


def test_report_without_penalties():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    report = penalty_report(model)
    assert report.rows == [] and report.total == 0.0
    assert "(no regularized weights)" in str(report)


def test_dataframes():
    pandas = pytest.importorskip("pandas")
    report = penalty_report(_model(), l2=0.01)
    frame = report.to_dataframe()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame["layer"]) == ["inner/wide", "middle", "last"]
    assert frame["penalty"].sum() == pytest.approx(report.total)
    what_if = report.to_dataframe(what_if=True)
    assert what_if["share_balanced"].sum() == pytest.approx(1.0)


@pytest.mark.run_once
def test_dataframe_without_pandas_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        penalty_report(_model()).to_dataframe()


def test_bad_factor():
    with pytest.raises(ValueError, match="Received: l2=-1"):
        penalty_report(_model(), l2=-1)


def _inspect(*arguments, env=None):
    return subprocess.run(
        [sys.executable, "-m", "keras_scaled_l2", "inspect", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**as_a_user_runs_it(), **(env or {})},
    )


def test_inspect_prints_penalties_that_sum_to_the_model_losses(tmp_path):
    model = _model()
    path = tmp_path / "model.keras"
    model.save(path)
    result = _inspect(str(path), "--l2", "0.01")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    now = lines[
        lines.index("Penalties now (the terms Keras adds to the loss):") :
    ]
    rows = [line.split() for line in now[3:6]]  # after the header and rule
    penalties = [float(row[-3]) for row in rows]
    assert [row[0] for row in rows] == ["inner/wide", "middle", "last"]
    # Set in the layers' configs: keras.models.load_model restores them.
    assert [row[-1] for row in rows] == ["keras"] * 3
    assert sum(penalties) == pytest.approx(
        float(keras.ops.sum(model.losses)), rel=1e-6
    )
    total = next(line for line in lines if line.startswith("total penalty:"))
    assert float(total.split(":")[1]) == pytest.approx(
        float(keras.ops.sum(model.losses)), rel=1e-6
    )
    assert any("under each scale" in line for line in lines)
    assert_no_native_log_lines(result)


@pytest.mark.parametrize("extension", [".keras", ".h5", ".txt"])
def test_inspect_rejects_files_that_are_not_models(capsys, tmp_path, extension):
    path = tmp_path / f"notes{extension}"
    path.write_text("not a model")
    status, _, err = run_in_process(capsys, "inspect", str(path))
    assert status == 2
    assert "keras-scaled-l2 inspect: error: not a Keras model file" in err


def test_inspect_missing_file(capsys, tmp_path):
    status, _, err = run_in_process(
        capsys, "inspect", str(tmp_path / "absent.keras")
    )
    assert status == 2
    assert "error: no such file:" in err


def test_inspect_a_folder_says_what_it_takes(capsys, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    status, out, err = run_in_process(capsys, "inspect", str(folder))
    assert (status, out) == (2, "")
    assert err == (
        f"keras-scaled-l2 inspect: error: {folder} is a folder, not a saved "
        "model: inspect takes a .keras or .h5 file, or a folder that "
        "model.save(path, zipped=False) wrote (it holds config.json); name "
        "the model file inside the folder\n"
    )
    # A folder that model.save(path, zipped=False) wrote is a model.
    model = _model()
    model.save(folder / "unzipped", zipped=False)
    status, out, err = run_in_process(
        capsys, "inspect", str(folder / "unzipped")
    )
    assert status == 0, err
    total = next(line for line in out.splitlines() if "total penalty:" in line)
    assert float(total.split(":")[1]) == pytest.approx(
        float(keras.ops.sum(model.losses)), rel=1e-6
    )


def test_inspect_says_when_safe_mode_refused_a_file(capsys, tmp_path):
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Lambda(lambda x: x * 2),
            keras.layers.Dense(2, kernel_regularizer=ScaledL2(0.1)),
        ]
    )
    path = str(tmp_path / "with_lambda.keras")
    model.save(path)
    status, out, err = run_in_process(capsys, "inspect", path)
    assert status == 2
    assert "Keras's safe mode refused to load" in err
    assert "--no-safe-mode" in err
    assert out == ""
    status, out, err = run_in_process(capsys, "inspect", path, "--no-safe-mode")
    assert status == 0, err
    total = next(line for line in out.splitlines() if "total penalty:" in line)
    assert float(total.split(":")[1]) == pytest.approx(
        float(keras.ops.convert_to_numpy(model.losses[0])), rel=1e-6
    )


CUSTOM_LAYER = textwrap.dedent(
    """
    import keras

    @keras.saving.register_keras_serializable(package="shop")
    class Doubling(keras.layers.Layer):
        def call(self, x):
            return 2 * x
    """
)


# Run once: what it tests is the loader's reading of the saved config (an
# unregistered class, then `--import`), which no backend enters.
@pytest.mark.run_once
def test_inspect_custom_objects_and_the_import_option(tmp_path):
    (tmp_path / "shop_layers.py").write_text(CUSTOM_LAYER)
    spec = importlib.util.spec_from_file_location(
        "shop_layers", tmp_path / "shop_layers.py"
    )
    shop_layers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shop_layers)  # registers `shop>Doubling` here
    model = keras.Sequential(
        [
            keras.Input((4,)),
            shop_layers.Doubling(),
            keras.layers.Dense(2, kernel_regularizer=ScaledL2(0.1)),
        ]
    )
    path = str(tmp_path / "custom.keras")
    model.save(path)
    # A fresh process has not registered it: as a user's shell.
    refused = _inspect(path)
    assert refused.returncode == 2
    assert "uses custom objects (Doubling)" in refused.stderr
    assert "--import MODULE" in refused.stderr
    accepted = _inspect(
        path, "--import", "shop_layers", env={"PYTHONPATH": str(tmp_path)}
    )
    assert accepted.returncode == 0, accepted.stderr[-2000:]
    assert "total penalty:" in accepted.stdout


def test_report_shows_the_kernel_count_beside_the_scale():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)]
    )
    attach_regularizer(
        model, ScaledL2(0.01, scale="none"), normalize_depth=True
    )
    report = penalty_report(model)
    rows = report.rows
    assert [(row.scale, row.num_kernels) for row in rows] == [("none", 2)] * 2
    assert str(report).count(" ScaledL2(0.01, none, num_kernels=2) ") == 2
    for row, weight in zip(rows, model.trainable_weights[::2], strict=True):
        want = reference_penalty(
            keras.ops.convert_to_numpy(weight), l2=0.01, scale="none"
        )
        assert row.penalty == pytest.approx(want / 2, rel=1e-5)


def _one_dense_per_penalty(penalties):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((6,))]
        + [
            keras.layers.Dense(4, name=name, kernel_regularizer=penalty)
            for name, penalty in penalties.items()
        ]
    )


def test_each_row_names_its_penalty_class_and_factors():
    penalties = {
        "keras_l2": keras.regularizers.L2(0.01),
        "keras_l1": keras.regularizers.L1(0.01),
        "keras_l1l2": keras.regularizers.L1L2(l1=0.001, l2=0.01),
        "orthogonal": keras.regularizers.OrthogonalRegularizer(0.01),
        "scaled_l2": ScaledL2(0.01),
        "scaled_l1": ScaledL1(0.01, scale="fan_in"),
        "scaled_l1l2": ScaledL1L2(l1=0.001, l2=0.01, num_examples=600),
        "per_kernel": ScaledL2(0.0001, scale="none", num_kernels=8),
    }
    expected = {
        "keras_l2": "L2(0.01)",
        "keras_l1": "L1(0.01)",
        "keras_l1l2": "L1L2(l1=0.001, l2=0.01)",
        "orthogonal": "OrthogonalRegularizer(factor=0.01, mode='rows')",
        "scaled_l2": "ScaledL2(0.01, balanced)",
        "scaled_l1": "ScaledL1(0.01, fan_in)",
        "scaled_l1l2": "ScaledL1L2(l1=0.001, l2=0.01, balanced, "
        "num_examples=600)",
        "per_kernel": "ScaledL2(0.0001, none, num_kernels=8)",
    }
    report = penalty_report(_one_dense_per_penalty(penalties))
    assert {row.layer: row.regularizer for row in report.rows} == expected
    # L1 and L2 of the same factor have the same scale, not the same label.
    assert report.rows[0].scale == report.rows[1].scale == "none"
    lines = str(report).splitlines()
    header = lines[1].split()
    assert header[5] == "regularizer"
    for row in report.rows:
        (line,) = [x for x in lines if x.split()[:1] == [row.layer]]
        assert f" {row.regularizer} " in line
    pandas = pytest.importorskip("pandas")
    frame = report.to_dataframe()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame["regularizer"]) == list(expected.values())


@pytest.mark.parametrize(
    "count, toward, reload",
    [
        (
            1,
            "toward start: 1 of these penalties is a starting-point penalty "
            "(L2-SP): it pulls its kernel toward its starting weights w0",
            "reload: 1 of these penalties sits in a layer whose saved config "
            "is not known to carry it, and no record does: it comes back "
            "only if the layer's constructor sets it again. Set it with",
        ),
        (
            2,
            "toward start: 2 of these penalties are starting-point penalties "
            "(L2-SP): they pull each kernel toward its starting weights w0",
            "reload: 2 of these penalties sit in layers whose saved configs "
            "are not known to carry them, and no record does: they come back "
            "only if the layer's constructor sets them again. Set them with",
        ),
    ],
)
def test_notes_agree_with_the_number_of_penalties(count, toward, reload):
    model = _one_dense_per_penalty({f"dense_{i}": None for i in range(count)})
    attach_regularizer(model, ScaledL2(0.01), anchor=True)
    text = str(penalty_report(model))
    assert toward in text
    # Set by hand, where no saved config is known to carry them.
    model = keras.Sequential([keras.Input((4,)), _Holding(count)])
    for dense in model.layers[0].inner:
        dense.kernel.regularizer = ScaledL2(0.01)
    assert reload in str(penalty_report(model))


class _Holding(keras.layers.Layer):
    """A custom layer whose config does not save its `Dense` layers."""

    def __init__(self, count, **kwargs):
        super().__init__(**kwargs)
        self.inner = [keras.layers.Dense(3) for _ in range(count)]

    def build(self, input_shape):
        for dense in self.inner:
            dense.build(input_shape)

    def call(self, x):
        return sum(dense(x) for dense in self.inner)
