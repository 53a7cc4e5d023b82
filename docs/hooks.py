"""Build hooks: bring in what lives outside `pages/`, and check the API page.

- The committed notebooks (`notebooks/*.ipynb`) and the study's plot join
  the site as files, so the notebooks are rendered from their committed
  outputs and the plot is shown, without copies in the repository.
- Every name in `keras_scaled_l2.__all__` must have a docstring with a
  runnable example (`>>>`) and an entry on the API page; a missing one fails
  the build. The package is read statically (griffe), so the build needs
  neither Keras nor a backend.
"""

import pathlib
import re

import griffe
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXTERNAL = {
    "notebooks": "*.ipynb",
    "benchmarks/results": "*.png",
}


@event_priority(100)  # before mkdocs-jupyter turns notebooks into pages
def on_files(files, config):
    for folder, pattern in EXTERNAL.items():
        for path in sorted((ROOT / folder).glob(pattern)):
            files.append(
                File(
                    f"{folder}/{path.name}",
                    src_dir=str(ROOT),
                    dest_dir=config["site_dir"],
                    use_directory_urls=config["use_directory_urls"],
                )
            )
    return files


def on_pre_build(config):
    package = griffe.load("keras_scaled_l2", search_paths=[str(ROOT)])
    names = package.members["__all__"].value
    public = [str(name).strip("'\"") for name in names.elements]
    api = (pathlib.Path(config["docs_dir"]) / "api.md").read_text()
    listed = set(re.findall(r"^::: keras_scaled_l2\.(\w+)", api, re.M))
    problems = []
    for name in public:
        if name == "__version__":
            continue
        if name not in listed:
            problems.append(f"{name}: not on the API page")
        docstring = package[name].docstring
        if docstring is None or ">>>" not in docstring.value:
            problems.append(f"{name}: no docstring with a runnable example")
    if problems:
        raise PluginError("API reference: " + "; ".join(problems))
