"""Every notebook runs top to bottom, and its committed copy shows a plot."""

import importlib.util
import json
import re

import keras
import nbformat
import pytest
from project_paths import ROOT

FOLDER = ROOT / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))

spec = importlib.util.spec_from_file_location("execute", FOLDER / "execute.py")
execute = importlib.util.module_from_spec(spec)
spec.loader.exec_module(execute)


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_are_complete_and_show_a_plot(path):
    notebook = nbformat.read(path, as_version=4)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code_cells), "not executed"
    outputs = [o for c in code_cells for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)


# A path of the machine that ran the notebook: a home, a temporary folder, an
# installation (`site-packages`), on Linux, macOS or Windows.
MACHINE_PATH = re.compile(
    r"(?<![\w.])/(?:home|root|tmp|var|usr|opt|work|Users|private)/"
    r"|site-packages|(?<!\w)[A-Za-z]:(?:\\){1,2}\w"
)


def _output_texts(notebook):
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                yield output.name, output.text
            else:
                yield output.output_type, json.dumps(output.get("data", {}))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_hold_no_machine_paths_and_no_warnings(path):
    notebook = nbformat.read(path, as_version=4)
    for kind, text in _output_texts(notebook):
        found = MACHINE_PATH.search(text)
        assert found is None, f"{kind}: {text[max(found.start() - 40, 0) :]}"
        if kind == "stderr":
            assert "warning" not in text.lower(), text


def test_the_path_check_sees_paths():
    for text in (
        "/tmp/tmpw5lmd0j8/classifier.keras",
        "/home/ann/.venv/lib/python3.11/site-packages/tqdm/auto.py:21",
        "C:\\Users\\ann\\model.keras",
        "saved to /Users/ann/model.keras",
    ):
        assert MACHINE_PATH.search(text), text
    for text in (
        "0.5/0.25",
        "mlp/dense/kernel",
        "a/tmp/b",
        json.dumps("loss:\n"),
    ):
        assert MACHINE_PATH.search(text) is None, text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path):
    # The recipes are written for the default backend; executing them once
    # per backend leg would only triple the suite's time.
    if keras.backend.backend() != "tensorflow":
        pytest.skip("notebooks are executed in the tensorflow leg")
    notebook = execute.execute(path, write=False)
    outputs = [o for c in notebook.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
