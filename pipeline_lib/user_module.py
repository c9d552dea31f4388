"""Load the pipeline's user module (preprocessing_fn, model builder) from its file, TFX-style."""

import functools
import importlib.util
import sys


def load(config):
    path = config.module_path()
    name = f"pipeline_user_{config.name}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def preprocessing_fn(config):
    """The user's preprocessing_fn with the config bound, as tf.Transform calls it: fn(inputs)."""
    fn = getattr(load(config), config.module.preprocessing_fn)
    return functools.partial(fn, config=config)


def model_fn(config):
    return getattr(load(config), config.module.model_fn)
