"""The pipeline's functions: the user module's (loaded from its file, TFX-style) where it defines
them, the platform's ready-made ones (pipeline_lib.transforms, pipeline_lib.models) otherwise."""

import functools
import importlib.util
import logging
import sys

log = logging.getLogger(__name__)


def load(config):
    """The user module, or None for a config-only pipeline."""
    path = config.module_path()
    if path is None:
        return None
    name = f"pipeline_user_{config.name}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _defined(config, field: str):
    """The module's function named by `module.<field>`; None when the module leaves it to the
    platform. A name the config sets explicitly must exist."""
    module = load(config)
    if module is None:
        return None
    name = getattr(config.module, field)
    fn = getattr(module, name, None)
    if fn is None and field in config.module.model_fields_set:
        raise AttributeError(f"field 'module.{field}': {config.module.file} defines no function {name}")
    return fn


def preprocessing_fn(config):
    """The preprocessing_fn with the config bound, as tf.Transform calls it: fn(inputs)."""
    fn = _defined(config, "preprocessing_fn")
    if fn is None:
        from pipeline_lib import transforms

        log.info("%s: the platform's preprocessing_fn (pipeline_lib.transforms)", config.name)
        fn = transforms.preprocessing_fn
    return functools.partial(fn, config=config)


def model_fn(config):
    fn = _defined(config, "model_fn")
    if fn is None:
        from pipeline_lib import models

        log.info("%s: the platform's %s model (pipeline_lib.models)", config.name, config.training.model)
        fn = models.MODELS[config.training.model]
    return fn
