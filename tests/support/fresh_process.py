"""Runs Python in a new process, as a user reloading a saved model would."""

import json
import os
import subprocess
import sys


def run_json(arguments, env=None, timeout=600):
    """Runs `python *arguments`; returns the JSON its last output line holds.

    Fails the calling test, with the end of stderr, if the process fails.
    """
    result = subprocess.run(
        [sys.executable, *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
