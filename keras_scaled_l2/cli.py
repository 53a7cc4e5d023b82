"""Command line: `python -m keras_scaled_l2 demo|inspect`.

Also installed as the `keras-scaled-l2` console script.
"""

import argparse
import sys

DEMO_DESCRIPTION = """\
Train the same deep ReLU network (4 hidden layers of 256) on a synthetic
low-signal tabular data set, once per weight penalty, and print one row per
penalty: the rank correlation of the test predictions with the target, the
spread of the predictions, the last epoch's penalty and data (mse) loss as
PenaltyLogger logs them, the epoch at which CollapseMonitor fired, the
training time, and `collapsed` where the network ended up predicting one
constant. Everything is generated locally and seeded."""


INSPECT_DESCRIPTION = """\
Load a saved Keras model (without compiling it) and print one row per
regularized weight: its layer, shape, fans, regularizer (class and
factors), penalty and share of the total penalty. With --l2, also print
what that L2 factor would cost each kernel under every scale. `model` is a
.keras or .h5 file, or a folder that model.save(path, zipped=False) wrote.
Exits with status 2, and a message, when the file is missing, is another
folder, is not a Keras model, needs custom objects that are not
registered, or holds Python code (a `Lambda` layer) that Keras's safe mode
refuses to load: --no-safe-mode loads such a file, if you trust it."""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-scaled-l2",
        description="Keras weight penalties scaled by each kernel's shape.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="plain L2 vs scaled L2 on noisy tabular data",
        description=DEMO_DESCRIPTION,
    )
    demo.add_argument(
        "--epochs", type=_positive_int, default=20, help="default: 20"
    )
    demo.add_argument(
        "--train-rows", type=_positive_int, default=16000, help="default: 16000"
    )
    demo.add_argument(
        "--test-rows", type=_positive_int, default=4000, help="default: 4000"
    )
    demo.add_argument(
        "--batch-size", type=_positive_int, default=256, help="default: 256"
    )
    demo.add_argument("--seed", type=int, default=0, help="default: 0")
    inspect = commands.add_parser(
        "inspect",
        help="per-layer penalty report of a saved model",
        description=INSPECT_DESCRIPTION,
    )
    inspect.add_argument(
        "model",
        help="a saved model: a .keras or .h5 file, or a folder saved with "
        "zipped=False",
    )
    inspect.add_argument(
        "--l2",
        type=_non_negative_float,
        default=None,
        help="also show each kernel's L2 penalty with this factor under "
        "every scale",
    )
    inspect.add_argument(
        "--import",
        dest="modules",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (one that registers the model's custom "
        "objects); repeatable",
    )
    inspect.add_argument(
        "--no-safe-mode",
        dest="safe_mode",
        action="store_false",
        help="load with safe_mode=False, which runs the Python code a file "
        "can hold (Lambda layers): only for a file you trust",
    )
    return parser


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, received {text!r}"
        )
    return value


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected a non-negative number, received {text!r}"
        )
    return value


class _InspectError(Exception):
    """A user-facing reason why the model cannot be inspected."""


def _load_model(path, modules, safe_mode=True):
    import importlib
    import os
    import zipfile

    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise _InspectError(
                f"{path} is a folder, not a saved model: inspect takes a "
                ".keras or .h5 file, or a folder that model.save(path, "
                "zipped=False) wrote (it holds config.json); name the model "
                "file inside the folder"
            )
    elif not os.path.isfile(path):
        raise _InspectError(f"no such file: {path}")
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise _InspectError(f"cannot import {module}: {error}") from error
    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise _InspectError(f"not a Keras model file (not a zip): {path}")

    from keras_scaled_l2 import _keras_internals, saving

    try:
        return saving.load_model(path, compile=False, safe_mode=safe_mode)
    except TypeError as error:
        missing = _keras_internals.unregistered_class(error)
        what = f" ({missing})" if missing else ""
        raise _InspectError(
            f"{path} uses custom objects{what} that are not registered in "
            "this process; name the module that registers them with "
            f"--import MODULE. Keras said: {_first_line(error)}"
        ) from error
    except saving.PenaltyRecordError as error:
        raise _InspectError(
            f"{path} loads, but its record of penalties does not fit the "
            f"model: {_first_line(error)}"
        ) from error
    except (ValueError, OSError) as error:
        if _keras_internals.refused_by_safe_mode(error):
            raise _InspectError(
                f"{path} is a Keras model that Keras's safe mode refused to "
                "load: it holds Python code (a Lambda layer), which loading "
                "would run. If you trust the file, inspect it with "
                f"--no-safe-mode. Keras said: {_first_line(error)}"
            ) from error
        raise _InspectError(
            f"not a Keras model file (.keras or .h5): {path}. Keras said: "
            f"{_first_line(error)}"
        ) from error


def _first_line(error):
    return str(error).strip().splitlines()[0] if str(error).strip() else ""


def _run_inspect(arguments):
    model = _load_model(arguments.model, arguments.modules, arguments.safe_mode)
    from keras_scaled_l2.report import penalty_report

    print(f"{arguments.model}: {model.name}, {model.count_params()} weights")
    print(penalty_report(model, l2=arguments.l2))


def _run_demo(arguments):
    # Only this command needs the demo module.
    from keras_scaled_l2 import demo

    print(
        f"Training a 4x256 ReLU MLP for {arguments.epochs} epochs on "
        f"{arguments.train_rows} noisy rows, once per penalty.\n"
    )
    print(demo.HEADER, flush=True)
    results = demo.run_demo(
        epochs=arguments.epochs,
        num_train=arguments.train_rows,
        num_test=arguments.test_rows,
        batch_size=arguments.batch_size,
        seed=arguments.seed,
        on_result=lambda result: print(demo.format_row(result), flush=True),
    )
    print(
        "\ncollapsed: the predictions' std fell below "
        f"{demo.COLLAPSE_RATIO:g} x the target's std (one constant output)."
    )
    return results


def main(argv=None):
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.command == "demo":
        _run_demo(arguments)
    elif arguments.command == "inspect":
        try:
            _run_inspect(arguments)
        except _InspectError as error:
            parser.exit(2, f"keras-scaled-l2 inspect: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
