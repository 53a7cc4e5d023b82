"""A callback that records which train function each `fit` runs."""

import keras


class SeenTrainFunction(keras.callbacks.Callback):
    """`seen`: the model's train function at each `on_train_begin`.

    Place it after any callback that swaps the function at train begin.
    """

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_begin(self, logs=None):
        self.seen.append(self.model.train_function)
