"""The factor search on KerasTuner: one chief and two workers, real
processes talking gRPC over the loopback, sharing one search."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

from keras_scaled_l2 import _halving

HERE = pathlib.Path(__file__).resolve().parent


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
        [sys.executable, str(HERE / "tuner_process.py"), str(directory)],
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
    while True:
        decision = _halving.next_fits(plan, records)
        if decision.done:
            break
        for fit in decision.fits:
            (trial,) = [
                t
                for t in trials
                if (t["index"], t["seed"], t["epochs"])
                == (fit.index, fit.seed, fit.epochs)
            ]
            assert trial["initial_epoch"] == fit.initial_epoch
            records.append(
                _halving.Record(
                    fit.index,
                    fit.seed,
                    fit.epochs,
                    trial["score"],
                    bool(trial["collapsed"]),
                )
            )
    assert len(records) == len(trials)
    chosen = _halving.factor_of(search["prior"], 10**0.5, decision.chosen)
    factors = [held["factor"]] + [report["factor"] for report in reports]
    assert factors == [pytest.approx(chosen, rel=1e-12)] * 3, factors
    # Some fit was continued from a shorter one: the halving ran.
    assert any(t["initial_epoch"] > 0 for t in trials)
