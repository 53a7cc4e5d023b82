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
restored. A missing backend ends the command line with the remedy alone,
one line, not the traceback through Keras's imports that leads to it.

The remedy's install command fits how this package was installed: from
a package index, `pip install "keras-scaled-l2[jax]"`; from a clone (as
the README's Quick start does), the clone's folder with the extra,
`pip install -e "/path/to/clone[jax]"` (`-e` where it was editable);
otherwise the backend alone. `pip` is the one of this interpreter.
"""

import contextlib
import importlib
import importlib.metadata
import json
import os
import shlex
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from types import ModuleType

BACKEND_EXTRAS = {"tensorflow": "tensorflow", "jax": "jax", "torch": None}
"""Per backend module, the extra of this package that installs it."""

COMMAND = "keras-scaled-l2"

DISTRIBUTION = "keras-scaled-l2"
"""The name this package is installed under (its extras are its)."""


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
        install_command(extra)
        if extra
        else f"{_pip()} install torch (the build for your machine, see "
        "pytorch.org)"
    )
    return (
        f"keras-scaled-l2 needs a Keras backend, and the configured one, "
        f"{backend!r}, is not installed. Install it with: {install}; or "
        "choose an installed backend with the environment variable "
        "KERAS_BACKEND=tensorflow|jax|torch."
    )


def install_command(extra: str) -> str:
    """The pip command that adds `extra` to this installation of the package.

    Read from the installation's `direct_url.json` (PEP 610), which pip
    writes for an install from a folder or a URL and not for one from an
    index.

    Examples:
        >>> import sys
        >>> command = install_command("jax")
        >>> command.startswith(f"{sys.executable} -m pip install ")
        True
    """
    pip = f"{_pip()} install"
    # Run from a clone's folder, the build's `*.egg-info` there comes first
    # on `sys.path`; the installation is the first that an installer
    # (pip) wrote its `INSTALLER` file into.
    found = list(importlib.metadata.distributions(name=DISTRIBUTION))
    installed = [d for d in found if d.read_text("INSTALLER")]
    if not installed:
        return f"{pip} {extra}"  # run from a source tree, not installed
    direct_url = installed[0].read_text("direct_url.json")
    if not direct_url:
        return f"{pip} {shlex.quote(f'{DISTRIBUTION}[{extra}]')}"
    origin = json.loads(direct_url)
    url = urllib.parse.urlparse(origin.get("url", ""))
    if "dir_info" in origin and url.scheme == "file":
        folder = urllib.request.url2pathname(url.path)
        editable = "-e " if origin["dir_info"].get("editable") else ""
        return f"{pip} {editable}{shlex.quote(f'{folder}[{extra}]')}"
    return f"{pip} {extra}"  # a wheel or a repository: the backend alone


def _pip() -> str:
    return f"{shlex.quote(sys.executable)} -m pip"


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


try:
    import_keras()
except ImportError as error:
    missing = isinstance(error.__cause__, ModuleNotFoundError)
    if not (missing and started_as_command_line()):
        raise
    # The command line: the remedy alone, not Keras's chain of imports.
    print(f"{COMMAND}: error: {error}", file=sys.stderr)
    raise SystemExit(2) from None
