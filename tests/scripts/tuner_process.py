"""One process of a distributed factor search: the chief or a worker.

    python tests/scripts/tuner_process.py DIRECTORY

KerasTuner's environment variables say which (`KERASTUNER_TUNER_ID`,
`KERASTUNER_ORACLE_IP`, `KERASTUNER_ORACLE_PORT`). Prints, as one JSON
line, the trials this process ran (a worker) or the oracle holds (the
chief), and the factor `get_best_hyperparameters` gives.
"""

import json
import os
import sys

import keras
import numpy as np

from keras_scaled_l2 import ScaledL2
from keras_scaled_l2.tuner import FactorSearchOracle, FactorTuner

EPOCHS = 3
SEARCH = {"epochs": EPOCHS, "num_factors": 5, "prior": 0.01}


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(320, 16)).astype("float32")
    y = x[:, :2].sum(axis=1, keepdims=True) + rng.normal(size=(320, 1))
    return (x[:192], y[:192]), (x[192:], y[192:])


def build(hp):
    factor = hp.get("factor")
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(
                32, activation="relu", kernel_regularizer=ScaledL2(factor)
            ),
            keras.layers.Dense(1, kernel_regularizer=ScaledL2(factor)),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    return model


def main(directory):
    tuner = FactorTuner(
        FactorSearchOracle(**SEARCH),
        hypermodel=build,
        directory=directory,
        project_name="search",
    )
    (x, y), validation = data()
    ran = []

    class Noted(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            ran.append(None)

    tuner.search(
        x,
        y,
        validation_data=validation,
        batch_size=32,
        callbacks=[Noted()],
        verbose=0,
    )
    best = tuner.get_best_hyperparameters(1)[0]
    trials = []
    if os.environ["KERASTUNER_TUNER_ID"] == "chief":
        for trial in tuner.oracle.trials.values():
            values = trial.hyperparameters.values
            trials.append(
                {
                    "trial_id": trial.trial_id,
                    "status": trial.status,
                    "index": values["factor_search/index"],
                    "seed": values["factor_search/seed"],
                    "epochs": values["tuner/epochs"],
                    "initial_epoch": values["tuner/initial_epoch"],
                    "score": trial.score,
                    "collapsed": trial.metrics.get_last_value("collapsed"),
                }
            )
    print(
        json.dumps(
            {
                "tuner_id": os.environ["KERASTUNER_TUNER_ID"],
                "search": SEARCH,
                "fits": len(ran),
                "factor": best.get("factor"),
                "trials": trials,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
