"""Executes every notebook here in place, so that its outputs are current.

    python notebooks/execute.py [NAME.ipynb ...]

The tests execute the same notebooks (without writing them) in CI.
"""

import pathlib
import sys

import nbformat
from nbclient import NotebookClient

FOLDER = pathlib.Path(__file__).resolve().parent
TIMEOUT_SECONDS = 600  # per cell; a slow CI machine must not fail a recipe


def execute(path, write=True):
    """Runs `path` top to bottom in a fresh kernel; returns the notebook."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=TIMEOUT_SECONDS,
        kernel_name="python3",
        resources={"metadata": {"path": str(FOLDER)}},
    ).execute()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not _is_log_noise(o)]
    if write:
        nbformat.write(notebook, path)
    return notebook


# TensorFlow's C++ start-up lines, and the status lines TensorFlow and absl
# log as a SavedModel is written or an .h5 file saved: noise, not results.
_LOG_PREFIXES = (
    "I0000",
    "E0000",
    "W0000",
    "WARNING: All log messages",
    "To enable the following instructions",
    "INFO:tensorflow:Assets written to:",
    "WARNING:absl:",
)


def _is_log_noise(output):
    """Whether an output holds nothing but TensorFlow's and absl's logs."""
    if output.get("output_type") != "stream":
        return False
    lines = [line for line in output.get("text", "").splitlines() if line]
    return all(line.startswith(_LOG_PREFIXES) for line in lines)


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.name for p in FOLDER.glob("*.ipynb"))
    for name in names:
        print(f"executing {name}", flush=True)
        execute(FOLDER / name)
