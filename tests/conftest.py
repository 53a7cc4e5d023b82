import os

# Keep TensorFlow's C++ start-up chatter out of test output and subprocesses.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The layout of the tests:
#   package/   the package's tests, one folder per part of it (regularizers,
#              callbacks, saving, tools, search, keras_internals);
#   study/     the tests of the study in `benchmarks/` and of the numbers the
#              pages quote from its results;
#   project/   the project as a whole: the README's examples, ruff and mypy,
#              the notebooks, the demo, installs without a backend;
#   support/   helpers the tests import by name (see `pythonpath` in
#              pyproject.toml); data/: saved files they reload;
#   scripts/   scripts the tests run in processes of their own: importing
#              one would configure devices and pick a backend.
collect_ignore = ["scripts", "run_backends.py"]

ONCE_ALREADY_RAN = "KERAS_SCALED_L2_RUN_ONCE_RAN"
"""Set by `run_backends.py` for every backend leg after the first: the
tests marked `run_once` ran in the first leg and are deselected."""


def pytest_report_header():
    import keras

    return f"keras {keras.__version__}, backend: {keras.backend.backend()}"


def pytest_collection_modifyitems(config, items):
    if not os.environ.get(ONCE_ALREADY_RAN):
        return
    ran, kept = [], []
    for item in items:
        (ran if item.get_closest_marker("run_once") else kept).append(item)
    if ran:
        config.hook.pytest_deselected(items=ran)
        items[:] = kept
