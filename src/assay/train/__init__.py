"""Training: the loop, calibration, and the ``train(config)`` pipeline that writes an artifact.

``from assay.train import train``; ``train("config.yaml")`` is the pipeline (``assay.train`` is this package).
"""

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

