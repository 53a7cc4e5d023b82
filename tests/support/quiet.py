"""The command line as a user meets it: no backend start-up chatter."""

import os
import re

# TensorFlow's C++ log lines (`I0000 00:00:... port.cc:153] ...`,
# `E0000 ... cuda_platform.cc:52] failed call to cuInit`) and the notices
# it prints before its logging is configured.
NATIVE_LOG_LINE = re.compile(
    r"^[IWEF]\d{4} |oneDNN|cpu_feature_guard|rebuild TensorFlow|"
    r"absl::InitializeLog",
    re.MULTILINE,
)


def as_a_user_runs_it():
    """This environment without the log level the test session sets."""
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def assert_no_native_log_lines(result):
    """Neither stream of a finished command holds a native log line."""
    for stream in (result.stdout, result.stderr):
        found = NATIVE_LOG_LINE.findall(stream)
        assert not found, stream[-3000:]
