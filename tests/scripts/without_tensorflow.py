"""Runs a script in a process where TensorFlow cannot be imported.

    python tests/scripts/without_tensorflow.py SCRIPT [ARGS...]

Installs an import hook that refuses `tensorflow` as an environment without
it would (`ModuleNotFoundError`), then runs SCRIPT as `__main__`. Used by
`test_backends_optional.py`; CI also runs that module in a virtual
environment that really has no TensorFlow.
"""

import importlib.abc
import runpy
import sys


class _RefuseTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, _RefuseTensorFlow())
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
