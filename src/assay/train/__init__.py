"""Training: the loop, calibration, and the ``train(config)`` pipeline that writes an artifact.

``assay.train`` is this package and, called, the pipeline: ``assay.train("config.yaml")`` is
``assay.train.train("config.yaml")``, so the top level offers ``train`` without hiding the package.
"""

import sys as _sys
import types as _types

from ._calibrate import calibrate, choose_threshold, fit_temperature, smoothed_prior
from ._loop import Cancelled, class_weights, default_learning_rate, train_loop
from ._pipeline import TrainResult, train

__all__ = [
    "Cancelled",
    "TrainResult",
    "calibrate",
    "choose_threshold",
    "class_weights",
    "default_learning_rate",
    "fit_temperature",
    "smoothed_prior",
    "train",
    "train_loop",
]


class _TrainModule(_types.ModuleType):
    """This package, callable as :func:`train`."""

    def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return train(*args, **kwargs)


_sys.modules[__name__].__class__ = _TrainModule
