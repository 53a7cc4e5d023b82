"""Importing Keras: the missing-backend remedy, and a quiet command line.

TensorFlow, JAX and PyTorch are optional dependencies of this package (a
Keras 3 add-on should not force one backend on users of another). Without
the configured backend, `import keras` fails deep inside Keras with a bare
`No module named 'tensorflow'`; `import_keras` turns that into a message
with the remedy.

TensorFlow also prints, from C++ and before Python can configure anything,
start-up lines such as the oneDNN and CPU-instruction notices and, on a
machine without a GPU, `failed call to cuInit`. In a program of the user's
those are the user's to see; in this package's own command line they land
in the middle of a table. So when the process is the command line
(`keras-scaled-l2 ...` or `python -m keras_scaled_l2 ...`) and the user has
not set `TF_CPP_MIN_LOG_LEVEL`, the backend starts with those lines
silenced. Errors still surface: a failing import raises after stderr is
restored.
"""

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType

BACKEND_EXTRAS = {"tensorflow": "tensorflow", "jax": "jax", "torch": None}
"""Per backend module, the extra of this package that installs it."""

COMMAND = "keras-scaled-l2"


def import_keras() -> ModuleType:
    """Imports Keras, or raises `ImportError` naming the missing backend."""
    quiet = started_as_command_line() and (
        "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    )
    if not quiet:
        return _import_keras()
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    with _native_stderr_silenced():
        keras = _import_keras()
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()  # initializes the platforms
    return keras


def started_as_command_line(argv: list[str] | None = None) -> bool:
    """Whether the process is this package's command line.

    Reads the interpreter's own command line (`sys.orig_argv`), which no
    import changes: `keras-scaled-l2 ...` (the console script) or
    `python [options] -m keras_scaled_l2 ...`.

    Examples:
        >>> started_as_command_line(["python", "-m", "keras_scaled_l2", "demo"])
        True
        >>> started_as_command_line(["python", "/venv/bin/keras-scaled-l2"])
        True
        >>> started_as_command_line(["python", "train.py"])
        False
    """
    argv = list(sys.orig_argv if argv is None else argv)
    if "-m" in argv[1:-1]:
        return argv[argv.index("-m", 1) + 1] == "keras_scaled_l2"
    script = os.path.basename(argv[1]) if len(argv) > 1 else ""
    return script.removesuffix(".exe") == COMMAND


def _import_keras() -> ModuleType:
    try:
        return importlib.import_module("keras")
    except ModuleNotFoundError as error:
        if error.name not in BACKEND_EXTRAS:
            raise
        raise ImportError(_missing_backend_message(error.name)) from error


def _missing_backend_message(backend: str) -> str:
    extra = BACKEND_EXTRAS[backend]
    install = (
        f'pip install "keras-scaled-l2[{extra}]"'
        if extra
        else "pip install torch (the build for your machine, see pytorch.org)"
    )
    return (
        f"keras-scaled-l2 needs a Keras backend, and the configured one, "
        f"{backend!r}, is not installed. Install it with: {install}; or "
        "choose an installed backend with the environment variable "
        "KERAS_BACKEND=tensorflow|jax|torch."
    )


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Points file descriptor 2, where C++ code logs, at the null device."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


import_keras()
