"""Build hooks: bring in what lives outside `pages/`, and check the API page.

- The committed notebooks (`notebooks/*.ipynb`) and the study's plot join
  the site as files, so the notebooks are rendered from their committed
  outputs and the plot is shown, without copies in the repository.
- Every name in `keras_scaled_l2.__all__` must have a docstring with a
  runnable example (`>>>`) and an entry on the API page; a missing one fails
  the build. The package is read statically (griffe), so the build needs
  neither Keras nor a backend.
- Every built page is read back: an example (`>>>`) that renders as prose
  (Markdown takes `>>>` for nested quotes) instead of a highlighted code
  block fails the build. Examples sit in an `Examples:` section of their
  docstring, which renders as code. So does a code fence that renders as
  prose (an info string the fence extension does not take, or a fence in a
  list item indented less than the item's text), and so does a Markdown
  list that renders as a paragraph (a paragraph with a line that starts
  with `- `, `* ` or `1. `: an item indented too little, or a list with no
  blank line before it).
- Each of these checks first proves that it can fail: before the build,
  a broken sample (a list the way the scales page's recommendation once
  wrote it) is rendered with the site's own Markdown settings, and the
  build stops if the check does not catch it.
"""

import html.parser
import pathlib
import re

import griffe
import markdown
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
    check_the_checks(config)
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


LIST_ITEM_IN_PROSE = re.compile(r"\n[ \t]*(?:[-*+]|\d+\.)[ \t]+\S")
"""A line of a paragraph that Markdown should have made a list item."""

BROKEN_SAMPLES = {
    "a list that renders as prose": (
        "- **To move a factor to more or fewer rows**, scale it by the\n"
        "  ratio of rows, but keep it below the cliff.\n"
        "    - Trained for as many steps, this rule kept the best factor\n"
        "      within 1.6x.\n"
        "    - At a fixed number of epochs it missed by 2.4-3.5x.\n"
        "\n"
        "  The margin was fitted to these runs after the fact.\n"
        "- **To move a factor to another family**, treat it as a start.\n"
    ),
    "a code fence that renders as prose": (
        "Run this:\n\n```py\nx = 1\n\nthen read on.\n"
    ),
}
"""Markdown that each prose check must reject: the self-check's input."""


class _CodeAsProse(html.parser.HTMLParser):
    """Collects the `>>>` lines (`found`), code fences (`fences`) and list
    items (`items`) that sit outside code and lists."""

    def __init__(self):
        super().__init__()
        self.depth = 0  # open <pre> and <code> elements
        self.quotes = 0  # open <blockquote> elements
        self.paragraph = None  # the open <p>'s text outside code
        self.found = []
        self.fences = []
        self.items = []

    def handle_starttag(self, tag, attrs):
        if tag in ("pre", "code"):
            self.depth += 1
        elif tag == "blockquote":
            self.quotes += 1
        elif tag == "p":
            self.paragraph = []

    def handle_endtag(self, tag):
        if tag in ("pre", "code") and self.depth:
            self.depth -= 1
        elif tag == "blockquote" and self.quotes:
            self.quotes -= 1
        elif tag == "p" and self.paragraph is not None:
            text = "".join(self.paragraph)
            item = LIST_ITEM_IN_PROSE.search(text)
            if item:
                self.items.append(text[item.start() :].strip()[:60])
            self.paragraph = None

    def handle_data(self, data):
        if self.paragraph is not None:
            # Code inside a paragraph stands for a word: it breaks no line.
            self.paragraph.append("code" if self.depth else data)
        # Markdown reads `>>> x` as `x` inside three nested quotes.
        quoted = self.quotes >= 3 and data.strip()
        if quoted or (not self.depth and ">>>" in data):
            self.found.append(data.strip().splitlines()[0][:60])
        if not self.depth and "```" in data:
            line = next(x for x in data.splitlines() if "```" in x)
            self.fences.append(line.strip()[:60])


def code_as_prose(page_html):
    """The `>>>` lines, the code fences and the list items of `page_html`
    that render as prose."""
    parser = _CodeAsProse()
    parser.feed(page_html)
    return parser.found, parser.fences, parser.items


def check_the_checks(config):
    """Fails the build unless each prose check rejects its broken sample,
    rendered with the site's own Markdown settings."""
    render = markdown.Markdown(
        extensions=config["markdown_extensions"],
        extension_configs=config["mdx_configs"],
    )
    for name, sample in BROKEN_SAMPLES.items():
        _, fences, items = code_as_prose(render.reset().convert(sample))
        caught = fences if "fence" in name else items
        if not caught:
            raise PluginError(
                f"self-check: the build's check for {name} passes a broken "
                "sample; it would pass broken pages too."
            )


def on_post_page(output, page, config):
    found, fences, items = code_as_prose(output)
    if items:
        raise PluginError(
            f"{page.file.src_uri}: {len(items)} list item(s) render as "
            f"prose, starting with {items[0]!r}; leave a blank line before "
            "a list, and indent an item's continuation and its nested "
            "items by 4 spaces."
        )
    if fences:
        raise PluginError(
            f"{page.file.src_uri}: {len(fences)} code fence(s) render as "
            f"prose, starting with {fences[0]!r}; use a plain language name "
            "(```python, or ```py for a block the tests do not run) and "
            "indent a fence in a list item as deep as the item's text."
        )
    if found:
        raise PluginError(
            f"{page.file.src_uri}: {len(found)} example(s) render as prose, "
            f"not as code, starting with {found[0]!r}; put them in an "
            "`Examples:` section of the docstring (or a fenced code block)."
        )
    return output
