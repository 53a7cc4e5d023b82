import keras
import numpy as np
import pytest
from fresh_process import run_json
from logged import assert_parts_exact
from project_paths import SCRIPTS

SCRIPT = SCRIPTS / "distributed_training.py"
ENGINES = {
    "mirrored": "tensorflow",
    "data_parallel": "jax",
    "model_parallel": "jax",
}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_two_devices_match_one(engine):
    if keras.backend.backend() != ENGINES[engine]:
        pytest.skip(f"runs in the {ENGINES[engine]} leg of the backend matrix")
    runs = run_json([str(SCRIPT), engine])
    single, distributed = runs["single"], runs["distributed"]
    assert single["devices"] == 1
    assert distributed["devices"] == 2
    if engine == "model_parallel":
        # Each device holds half of each hidden kernel: 20x64 and 64x32.
        assert single["shards"] == {
            "dense": [[20, 64]],
            "middle": [[64, 32]],
        }
        assert distributed["shards"] == {
            "dense": [[20, 32], [20, 32]],
            "middle": [[32, 32], [32, 32]],
        }
    # Starting weights are placed as their kernels are: sharded with them
    # under ModelParallel, mirrored or replicated with them otherwise.
    for name, (kernel, start) in distributed["placement"].items():
        assert start == kernel, name
    if engine == "model_parallel":
        assert "'model'" in distributed["placement"]["dense"][0]  # sharded
        # Half of dense's 20x64 float32 start per device, all of the head's 32.
        assert (
            sorted(distributed["start_bytes"].values())
            == [(20 * 32 + 32) * 4] * 2
        )
    else:
        assert (
            sorted(distributed["start_bytes"].values())
            == [(20 * 64 + 32) * 4] * 2
        )
    for a, b in zip(single["weights"], distributed["weights"], strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-4)
    assert sorted(single["history"]) == sorted(distributed["history"])
    assert "penalty/dense" in single["history"]
    # The head's penalty, toward its starting weights, grew from zero.
    assert single["history"]["penalty/head"][-1] > 0
    for key, values in single["history"].items():
        np.testing.assert_allclose(
            distributed["history"][key], values, rtol=1e-4, err_msg=key
        )
    # The penalty is reported once, not once per replica nor halved.
    assert_parts_exact(distributed["history"])
