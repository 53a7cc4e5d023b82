"""Both serialization round trips of a Keras object, as one assertion."""

import inspect
import json

import keras


def assert_serialization_round_trips(obj):
    """Checks `get_config` against the constructor and both round trips.

    1. The config keys are exactly the constructor's arguments, and the
       config is plain JSON.
    2. `from_config(get_config())` gives an object with the same config.
    3. `serialize_keras_object` -> JSON text -> `deserialize_keras_object`
       gives an object of the same class with the same config.
    """
    cls = type(obj)
    config = obj.get_config()
    parameters = inspect.signature(cls.__init__).parameters
    assert set(config) == set(parameters) - {"self"}
    assert json.loads(json.dumps(config)) == config

    rebuilt = cls.from_config(config)
    assert type(rebuilt) is cls
    assert rebuilt.get_config() == config

    text = json.dumps(keras.saving.serialize_keras_object(obj))
    restored = keras.saving.deserialize_keras_object(json.loads(text))
    assert type(restored) is cls
    assert restored.get_config() == config
    return restored
