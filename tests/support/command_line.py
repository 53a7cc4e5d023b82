"""Runs the `keras-scaled-l2` command line's own `main` in this process."""

from keras_scaled_l2.cli import main


def run_in_process(capsys, *arguments):
    """`(exit status, stdout, stderr)` of `keras-scaled-l2 *arguments`."""
    try:
        status = main(list(arguments))
    except SystemExit as exited:
        status = exited.code
    out, err = capsys.readouterr()
    return status, out, err
