"""Command line: `python -m keras_scaled_l2 demo` (or `keras-scaled-l2`)."""

import argparse
import sys

DEMO_DESCRIPTION = """\
Train the same deep ReLU network (4 hidden layers of 256) on a synthetic
low-signal tabular data set, once per weight penalty, and print one row per
penalty: the rank correlation of the test predictions with the target, the
spread of the predictions, the final penalty and data (mse) loss, the
training time, and `collapsed` where the network ended up predicting one
constant. Everything is generated locally and seeded."""


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


def _run_demo(arguments):
    # Imported here so that `--help` answers without loading a backend.
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
    arguments = build_parser().parse_args(argv)
    if arguments.command == "demo":
        _run_demo(arguments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
