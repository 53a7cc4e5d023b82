"""The factor search on KerasTuner: one chief and two workers, real
processes talking gRPC over the loopback, sharing one search."""

import json
import os
import socket
import subprocess
import sys

import keras
import keras_tuner
import numpy as np
import pytest
from project_paths import SCRIPTS

from keras_scaled_l2 import ScaledL2, _halving, search_factor
from keras_scaled_l2.tuner import FactorSearchOracle, FactorTuner


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(tuner_id, port, directory):
    env = {
        **os.environ,
        "KERASTUNER_TUNER_ID": tuner_id,
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": str(port),
    }
    return subprocess.Popen(
        [sys.executable, str(SCRIPTS / "tuner_process.py"), str(directory)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process, timeout):
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"timed out; stderr:\n{err[-3000:]}") from None
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.filterwarnings("ignore:search_factor. the chosen factor")
def test_factor_tuner_runs_the_fits_search_factor_runs(tmp_path):
    # The two drivers of one schedule, in this process on this backend:
    # the same fits, continued with their optimizer state, score the same.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 16)).astype("float32")
    y = x[:, :2].sum(axis=1, keepdims=True) + rng.normal(size=(256, 1))
    train, validation = (x[:160], y[:160]), (x[160:], y[160:])
    search = {"epochs": 4, "num_factors": 3}
    result = search_factor(
        _mlp,
        *train,
        validation_data=validation,
        batch_size=32,
        verbose=0,
        **search,
    )
    tuner = FactorTuner(
        FactorSearchOracle(**search),
        hypermodel=lambda hp: _mlp(hp.get("factor")),
        directory=tmp_path,
        project_name="local",
    )
    tuner.search(*train, validation_data=validation, batch_size=32, verbose=0)
    trials = tuner.oracle.trials.values()
    by_fit = {
        (
            t.hyperparameters["factor_search/index"],
            t.hyperparameters["factor_search/seed"],
            t.hyperparameters["tuner/epochs"],
        ): t.score
        for t in trials
    }
    assert sorted(by_fit) == sorted(
        (r.grid_index, r.seed, r.epochs) for r in result.records
    )
    # Where the two runs draw the same random numbers, they score alike
    # (one machine, same seeds: equal up to float32 rounding, a stated
    # tolerance). KerasTuner validates inside `fit`, and PyTorch's data
    # loader draws a seed from the global generator for each validation
    # pass, so later batches shuffle otherwise; a continued fit reloaded
    # from its file (the tuner) shuffles otherwise than one kept in memory
    # (search_factor) on JAX too. There, only the fits agree, not scores.
    backend = keras.backend.backend()
    for record in result.records:
        fresh = record.epochs < search["epochs"]
        if backend == "tensorflow" or (backend == "jax" and fresh):
            key = (record.grid_index, record.seed, record.epochs)
            assert by_fit[key] == pytest.approx(record.score, rel=1e-5)
    # The best model is the chosen factor's full fit, as it ended.
    (model,) = tuner.get_best_models(1)
    chosen = tuner.get_best_hyperparameters(1)[0]["factor"]
    (trial,) = tuner.oracle.get_best_trials(1)
    assert trial.hyperparameters["tuner/epochs"] == search["epochs"]
    predictions = np.asarray(model.predict(validation[0], verbose=0))
    assert np.mean((predictions - validation[1]) ** 2) == pytest.approx(
        trial.score, rel=1e-5
    )
    assert chosen == trial.hyperparameters["factor"]
    if backend == "tensorflow":
        best = tuner.get_best_hyperparameters(1)[0]["factor"]
        assert best == pytest.approx(result.factor, rel=1e-12)


def _mlp(factor):
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


def test_bad_input_to_the_oracle_and_the_tuner_is_refused(tmp_path):
    with pytest.raises(ValueError, match="argument `objective`"):
        FactorSearchOracle(epochs=4, objective="val_loss")
    with pytest.raises(ValueError, match="argument `budget`"):
        FactorSearchOracle(epochs=4, budget=1)
    with pytest.raises(ValueError, match="argument `oracle`"):
        FactorTuner(
            keras_tuner.RandomSearch(
                lambda hp: _mlp(0.01),
                objective="val_loss",
                max_trials=1,
                directory=tmp_path,
            ).oracle,
            hypermodel=lambda hp: _mlp(hp.get("factor")),
        )
    tuner = FactorTuner(
        FactorSearchOracle(epochs=4, num_factors=3),
        hypermodel=lambda hp: _mlp(hp.get("factor")),
        directory=tmp_path,
        project_name="no_validation",
    )
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 16)), rng.normal(size=(32, 1))
    with pytest.raises(ValueError, match="argument `validation_data`"):
        tuner.search(x, y, verbose=0)
    uncompiled = FactorTuner(
        FactorSearchOracle(epochs=4, num_factors=3),
        hypermodel=lambda hp: keras.Sequential(
            [keras.Input((16,)), keras.layers.Dense(1)]
        ),
        directory=tmp_path,
        project_name="uncompiled",
    )
    with pytest.raises(ValueError, match="argument `hypermodel`"):
        uncompiled.search(x, y, validation_data=(x, y), verbose=0)


# Distributed mode's processes and gRPC do not depend on the backend: the
# first backend leg runs it (the chief alone waits 20 s to stop).
@pytest.mark.run_once
def test_a_chief_and_two_workers_share_one_search_and_agree(tmp_path):
    port = _free_port()
    chief = _start("chief", port, tmp_path)
    workers = [_start(f"worker{k}", port, tmp_path) for k in range(2)]
    reports = [_finish(worker, 600) for worker in workers]
    held = _finish(chief, 120)

    # The workers shared the fits: each ran some, together all the oracle
    # handed out, and the oracle ran each fit once.
    fits = [report["fits"] for report in reports]
    trials = held["trials"]
    assert all(count >= 1 for count in fits), fits
    assert sum(fits) == len(trials)
    keys = [(t["index"], t["seed"], t["epochs"]) for t in trials]
    assert len(set(keys)) == len(keys)
    assert all(t["status"] == "COMPLETED" for t in trials)

    # The schedule, replayed on the scores the workers reported, asks for
    # exactly the fits that ran and chooses the factor all three report.
    search = held["search"]
    plan = _halving.Plan(
        epochs=search["epochs"], num_factors=search["num_factors"]
    )
    records = []

    def ran(fit):
        (trial,) = [
            t
            for t in trials
            if (t["index"], t["seed"], t["epochs"])
            == (fit.grid_index, fit.seed, fit.epochs)
        ]
        assert trial["initial_epoch"] == fit.initial_epoch
        return _halving.Record(
            fit.grid_index,
            fit.seed,
            fit.epochs,
            trial["score"],
            bool(trial["collapsed"]),
        )

    decision = _halving.run_in_turn(plan, ran, records)
    assert len(records) == len(trials)
    chosen = _halving.factor_of(search["prior"], 10**0.5, decision.chosen)
    factors = [held["factor"]] + [report["factor"] for report in reports]
    assert factors == [pytest.approx(chosen, rel=1e-12)] * 3, factors
    # Some fit was continued from a shorter one: the halving ran.
    assert any(t["initial_epoch"] > 0 for t in trials)
