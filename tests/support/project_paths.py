"""Where the project's folders are, for tests in any folder below `tests/`."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
"""The repository's root."""
TESTS = ROOT / "tests"
DATA = TESTS / "data"
"""Saved files the tests reload (`support/anchored_file.py` writes some)."""
SUPPORT = TESTS / "support"
"""The helpers, for a test's own processes to import too."""
SCRIPTS = TESTS / "scripts"
"""Scripts the tests run in processes of their own."""
BENCHMARKS = ROOT / "benchmarks"
