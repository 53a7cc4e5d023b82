"""The README's claims and the project's hygiene, checked."""

import dataclasses
import inspect
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from project_paths import ROOT

import keras_scaled_l2
from keras_scaled_l2 import ScaledL2

README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs" / "pages"


def _python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def _pages():
    """The README and the documentation pages, by name."""
    pages = {"README.md": README}
    for path in sorted(DOCS.glob("*.md")):
        pages[path.name] = path.read_text()
    return pages


def test_documented_python_examples_run_in_order():
    # On each page, plain ```python blocks run top to bottom in one
    # namespace, as a reader would paste them. ```py blocks are not run:
    # they need other devices, or the reader's own model.
    pages = _pages()
    namespaces = {}
    for name, text in pages.items():
        namespace = namespaces[name] = {}
        for block in _python_blocks(text):
            exec(compile(block, name, "exec"), namespace)
    assert namespaces["README.md"]["model"].losses
    callbacks = namespaces["callbacks.md"]
    assert callbacks["monitor"].collapsed_epoch is None
    assert str(sorted(callbacks["history"].history)) in pages["callbacks.md"]
    shares = [
        f"{row.layer}: {row.share:.0%}"
        for row in namespaces["tools.md"]["report"].rows
    ]
    assert str(shares) in pages["tools.md"]
    transformers = namespaces["transformers.md"]
    assert str(transformers["query_fans"]) in pages["transformers.md"]
    counts = (
        len(transformers["plain"].losses),
        len(transformers["reloaded"].losses),
    )
    assert f"{counts[0]} {counts[1]}" in pages["transformers.md"]
    assert counts == (0, len(transformers["attached"]))
    fine_tuning = namespaces["fine_tuning.md"]
    printed = f"{fine_tuning['attached']} {fine_tuning['toward']}"
    assert printed in pages["fine_tuning.md"]


def _readme_table_rows():
    """The README's per-layer table, recomputed on Glorot-uniform weights.

    The weights come from numpy, not from a backend's random generator, so
    every backend computes the same table.
    """
    rng = np.random.default_rng(0)

    def mlp(regularizer):
        model = keras.Sequential(
            [keras.Input((784,))]
            + [
                keras.layers.Dense(units, kernel_regularizer=regularizer)
                for units in (1024, 256, 10)
            ]
        )
        return model

    plain = mlp(keras.regularizers.L2(0.01))
    weights = []
    for layer in plain.layers:
        fan_in, fan_out = layer.kernel.shape
        limit = np.sqrt(6 / (fan_in + fan_out))
        weights += [
            rng.uniform(-limit, limit, (fan_in, fan_out)),
            np.zeros(fan_out),
        ]
    plain.set_weights(weights)
    scaled = mlp(ScaledL2(0.01))
    scaled.set_weights(weights)
    plain_penalties = [float(p) for p in plain.losses]
    scaled_penalties = [float(p) for p in scaled.losses]
    rows = []
    for layer, p, s in zip(
        plain.layers, plain_penalties, scaled_penalties, strict=True
    ):
        shape = str(tuple(layer.kernel.shape))
        rows.append(
            f"| {shape:<12} | {p:>10.3f} | "
            f"{100 * p / sum(plain_penalties):>5.1f} % | {s:>16.4f} | "
            f"{100 * s / sum(scaled_penalties):>5.1f} % |"
        )
    return rows


def test_readme_per_layer_table_matches_a_computation():
    getting_started = (DOCS / "index.md").read_text()
    for row in _readme_table_rows():
        assert row in README, row
        assert row in getting_started, row


@pytest.mark.run_once
def test_quick_start_has_exactly_two_commands():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", quick_start, flags=re.DOTALL)
    commands = block.strip().splitlines()
    assert len(commands) == 2
    assert commands[0].endswith("keras-scaled-l2 demo")
    assert commands[1].endswith("python tests/run_backends.py")


@pytest.mark.run_once
def test_version_and_typing_marker():
    assert re.fullmatch(r"\d+\.\d+\.\d+", keras_scaled_l2.__version__)
    package = pathlib.Path(keras_scaled_l2.__file__).parent
    assert (package / "py.typed").is_file()


@pytest.mark.run_once
def test_every_public_name_is_in_all():
    public = {
        name
        for name, value in vars(keras_scaled_l2).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public | {"__version__"} == set(keras_scaled_l2.__all__)


@pytest.mark.run_once
@pytest.mark.parametrize(
    "tool",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy", "--config-file", "pyproject.toml"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_linters_and_type_checker_are_clean(tool):
    result = subprocess.run(
        [sys.executable, "-m", *tool],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _public_callables():
    """Maps each function of the public API to `(function, is_method)`.

    The functions in `__all__`, and for each class in it the constructor,
    `__call__` and the public methods and properties defined in this
    package (inherited from Keras ones are Keras's to annotate).
    """
    found = {}
    for name in keras_scaled_l2.__all__:
        value = getattr(keras_scaled_l2, name)
        if not inspect.isclass(value):
            if callable(value):
                found[name] = (value, False)
            continue
        for owner in value.__mro__:
            if not owner.__module__.startswith("keras_scaled_l2"):
                continue
            for attribute, member in vars(owner).items():
                if attribute.startswith("_") and attribute not in {
                    "__init__",
                    "__call__",
                }:
                    continue
                key = f"{owner.__qualname__}.{attribute}"
                if isinstance(member, property):
                    for accessor in (member.fget, member.fset):
                        if accessor is not None:
                            found[f"{key}.{accessor.__name__}"] = (
                                accessor,
                                True,
                            )
                elif isinstance(member, classmethod):
                    found[key] = (member.__func__, True)
                elif isinstance(member, staticmethod):
                    found[key] = (member.__func__, False)
                elif inspect.isfunction(member):
                    found[key] = (member, True)
    return found


_PUBLIC_CALLABLES = _public_callables()


def _missing_annotations(function, is_method):
    """Names the parameters (and `"return"`) that have no annotation."""
    signature = inspect.signature(function)
    parameters = list(signature.parameters.values())[1 if is_method else 0 :]
    missing = [p.name for p in parameters if p.annotation is p.empty]
    if signature.return_annotation is signature.empty:
        missing.append("return")
    return missing


@pytest.mark.run_once
def test_the_annotation_check_sees_a_missing_annotation():
    def partly_annotated(x: int, y=0):
        return x + y

    assert _missing_annotations(partly_annotated, False) == ["y", "return"]
    assert _missing_annotations(ScaledL2.multiplier, True) == []
    assert "ScaledRegularizer.__call__" in _PUBLIC_CALLABLES
    assert "PenaltyReport.to_dataframe" in _PUBLIC_CALLABLES
    assert "shape_multiplier" in _PUBLIC_CALLABLES
    assert "PenaltyLogger.on_epoch_end" in _PUBLIC_CALLABLES


@pytest.mark.run_once
@pytest.mark.parametrize("name", sorted(_PUBLIC_CALLABLES))
def test_public_api_is_annotated(name):
    missing = _missing_annotations(*_PUBLIC_CALLABLES[name])
    assert not missing, f"{name} lacks annotations for {missing}"


def _documented_arguments(docstring, section_name="Args"):
    """The argument names an `Args:` section of a Google docstring lists."""
    section = re.search(
        rf"^( *){section_name}:\n((?:\1 {{4}}.*\n|\s*\n)+)",
        docstring or "",
        re.M,
    )
    if section is None:
        return set()
    indent = len(section.group(1)) + 4
    return set(
        re.findall(
            rf"^ {{{indent}}}\*{{0,2}}(\w+)(?: \(.*\))?:",
            section.group(2),
            re.M,
        )
    )


def _undocumented_arguments(name, function, is_method):
    """Names the parameters that the docstring's `Args:` does not list.

    A constructor is documented in its class docstring (a dataclass's
    fields under `Attributes:`). Methods that override a Keras method
    (`__call__`, `get_config`, the callback hooks) are documented by
    Keras, and are not asked for.
    """
    owner_name, _, attribute = name.rpartition(".")
    docstring = function.__doc__
    section_name = "Args"
    if attribute == "__init__":
        owner = getattr(keras_scaled_l2, owner_name)
        docstring = owner.__doc__
        if dataclasses.is_dataclass(owner):
            section_name = "Attributes"
    elif owner_name:
        owner = getattr(keras_scaled_l2, owner_name.split(".")[0])
        if any(
            attribute in vars(base)
            for base in owner.__mro__
            if not base.__module__.startswith("keras_scaled_l2")
        ):
            return []
    parameters = list(inspect.signature(function).parameters.values())
    if is_method:
        parameters = parameters[1:]
    listed = _documented_arguments(docstring, section_name)
    return [
        p.name
        for p in parameters
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and p.name not in listed
    ]


@pytest.mark.run_once
def test_the_args_check_sees_a_missing_argument():
    def documented(x, y):
        """Adds.

        Args:
            x: A number.
        """

    assert _undocumented_arguments("documented", documented, False) == ["y"]
    assert _documented_arguments(ScaledL2.__doc__) >= {"l2", "scale"}
    assert "ScaledL2.__init__" in _PUBLIC_CALLABLES
    assert "PenaltyReport.__init__" in _PUBLIC_CALLABLES


@pytest.mark.run_once
@pytest.mark.parametrize("name", sorted(_PUBLIC_CALLABLES))
def test_every_argument_of_the_public_api_is_documented(name):
    missing = _undocumented_arguments(name, *_PUBLIC_CALLABLES[name])
    assert not missing, f"{name}: no `Args:` entry for {missing}"


@pytest.mark.run_once
def test_public_constants_are_annotated():
    modules = [
        module
        for module_name, module in sys.modules.items()
        if module_name.startswith("keras_scaled_l2.")
    ]
    for name in keras_scaled_l2.__all__:
        value = getattr(keras_scaled_l2, name)
        if callable(value) or name == "__version__":
            continue
        assert any(
            vars(module).get(name) is value
            and name in inspect.get_annotations(module)
            for module in modules
        ), f"{name} has no annotation in the module that defines it"


@pytest.mark.run_once
def test_readme_links_point_at_files_that_exist():
    # The site's own links are checked by its strict build; the README is
    # read on its own, so its relative links are checked here.
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README)
    assert links
    for link in links:
        assert (ROOT / link).exists(), link
