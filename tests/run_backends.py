"""Runs the whole test suite once per Keras backend, each in its own process.

    python tests/run_backends.py [pytest arguments]

Each installed backend among TensorFlow, JAX and PyTorch gets its own
`pytest` run (a backend is fixed when Keras is first imported). A backend
that is not installed is reported and not run, unless it is listed in the
environment variable `KERAS_SCALED_L2_REQUIRED_BACKENDS` (comma-separated),
in which case its absence fails the run. The exit status is non-zero if any
run fails or no backend runs.

Tests marked `run_once` (their result does not depend on the backend, or
they run the whole demo) run in the first backend leg only.

The JAX leg keeps JAX's persistent compilation cache in a folder of its
own (unless `JAX_COMPILATION_CACHE_DIR` is set): the tests build many
models of the same shapes, in this process and in the fresh processes they
start, and compiling each step function once instead of once per test
takes about a third off the leg's time. The cache holds what XLA would
compile again; the results do not change.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree

BACKENDS = ("tensorflow", "jax", "torch")
ROOT = pathlib.Path(__file__).resolve().parent.parent


def _counts(junit_xml):
    suite = ElementTree.parse(junit_xml).getroot()
    if suite.tag == "testsuites":
        suite = suite[0]
    tests, skipped = int(suite.get("tests")), int(suite.get("skipped"))
    failed = int(suite.get("failures")) + int(suite.get("errors"))
    return tests - skipped - failed, failed, skipped


def _compilation_cache(folder):
    """JAX's persistent compilation cache in `folder`, every entry kept."""
    return {
        "JAX_COMPILATION_CACHE_DIR": os.path.join(folder, "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def main(pytest_arguments):
    required = {
        name.strip()
        for name in os.environ.get(
            "KERAS_SCALED_L2_REQUIRED_BACKENDS", ""
        ).split(",")
        if name.strip()
    }
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    status = 0
    lines = []
    once = {}  # the first leg runs the `run_once` tests
    for backend in BACKENDS:
        if importlib.util.find_spec(backend) is None:
            lines.append(f"{backend}: not installed, not run")
            if backend in required:
                status = 1
                lines[-1] += " (required: failing)"
            continue
        with tempfile.TemporaryDirectory() as folder:
            report = os.path.join(folder, "junit.xml")
            print(f"\n===== KERAS_BACKEND={backend} =====", flush=True)
            env = {**os.environ, **once, "KERAS_BACKEND": backend}
            if backend == "jax":
                env = {**_compilation_cache(folder), **env}
            code = subprocess.call(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    f"--junitxml={report}",
                    *pytest_arguments,
                ],
                cwd=ROOT,
                env=env,
            )
            once = {"KERAS_SCALED_L2_RUN_ONCE_RAN": "1"}
            passed, failed, skipped = (
                _counts(report) if os.path.exists(report) else (0, 1, 0)
            )
        if code != 0:
            status = 1
            failed = max(failed, 1)
        totals["passed"] += passed
        totals["failed"] += failed
        totals["skipped"] += skipped
        lines.append(
            f"{backend}: {passed} passed, {failed} failed, {skipped} skipped"
        )
    if totals["passed"] == 0:
        status = 1
    print("\n" + "\n".join(lines))
    print(
        f"backends: {totals['passed']} passed, {totals['failed']} failed, "
        f"{totals['skipped']} skipped"
    )
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
