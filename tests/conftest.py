import os

# Keep TensorFlow's C++ start-up chatter out of test output and subprocesses.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Scripts, not test modules: importing distributed_training.py would
# configure devices and pick a backend.
collect_ignore = ["distributed_training.py", "run_backends.py"]


def pytest_report_header():
    import keras

    return f"keras {keras.__version__}, backend: {keras.backend.backend()}"
