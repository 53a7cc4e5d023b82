"""The study's data sets: synthetic low-signal tabular, diabetes, MNIST-1D."""

import functools

import numpy as np

from keras_scaled_l2.datasets import make_low_signal_tabular
from transfer_study.settings import DIABETES_TRAIN_ROWS, MNIST1D_TRAIN_ROWS


def load_data(name, num_train, settings):
    """Returns `(x_train, y_train), (x_test, y_test)` (x float32).

    The test set does not depend on `num_train`: a smaller training set is
    the first rows of the larger one.

    `"diabetes"` is scikit-learn's bundled diabetes regression (442
    patients, 10 features: a small, noisy tabular set), split once with a
    fixed seed; features and target are standardized with the statistics
    of the full training split, so both sizes see the same units.

    `"mnist1d"` is MNIST-1D (Greydanus and Wiltschko 2024), generated
    locally by the `mnist1d` package with its default arguments (the
    published split: 4000 training and 1000 test sequences of 40 floats,
    10 classes); its labels are int32 class indices.
    """
    if name == "mnist1d":
        x, y, x_test, y_test = _mnist1d()
        if num_train > MNIST1D_TRAIN_ROWS:
            raise ValueError(
                f"mnist1d has {MNIST1D_TRAIN_ROWS} training rows; "
                f"received num_train={num_train}"
            )
        return (x[:num_train], y[:num_train]), (x_test, y_test)
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
    if num_train > DIABETES_TRAIN_ROWS:
        raise ValueError(
            f"diabetes has {DIABETES_TRAIN_ROWS} training rows; "
            f"received num_train={num_train}"
        )
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:DIABETES_TRAIN_ROWS], order[DIABETES_TRAIN_ROWS:]
    x_mean, x_std = x[train].mean(axis=0), x[train].std(axis=0)
    y_mean, y_std = y[train].mean(), y[train].std()

    def standardized(rows):
        return (
            ((x[rows] - x_mean) / x_std).astype("float32"),
            ((y[rows] - y_mean) / y_std).astype("float32"),
        )

    return standardized(train[:num_train]), standardized(test)


@functools.cache
def _mnist1d():
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())
    return (
        data["x"].astype("float32"),
        data["y"].astype("int32"),
        data["x_test"].astype("float32"),
        data["y_test"].astype("int32"),
    )
