"""The study's two data sets: synthetic low-signal tabular, and digits."""

import numpy as np

from keras_scaled_l2.datasets import make_low_signal_tabular
from transfer_study.settings import DIGITS_TRAIN_ROWS


def load_data(name, num_train, settings):
    """Returns `(x_train, y_train), (x_test, y_test)`; `y` one-hot if digits.

    The test set does not depend on `num_train`: a smaller training set is
    the first rows of the larger one.
    """
    if name == "synthetic":
        largest = max(settings.num_train["synthetic"])
        (x, y), test = make_low_signal_tabular(
            largest,
            settings.num_test,
            num_features=64,
            signal=settings.signal,
            seed=0,
        )
        return (x[:num_train], y[:num_train]), test
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = np.eye(10, dtype="float32")[digits.target]
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:DIGITS_TRAIN_ROWS], order[DIGITS_TRAIN_ROWS:]
    return (x[train[:num_train]], y[train[:num_train]]), (x[test], y[test])
