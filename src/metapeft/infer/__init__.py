"""Inference from a run directory alone: ``metapeft predict`` and ``metapeft eval --checkpoint``.

The model is rebuilt from ``RUN/config.yaml`` (model + PEFT spec, seed), ``RUN/export/config.json``
(class names, preprocessing) and the saved PEFT weights; the training images are never read.
"""

from .inputs import collect_images
from .predict import predict_files, write_predictions
from .rebuild import InferenceModel, load_inference_model

__all__ = ["InferenceModel", "collect_images", "load_inference_model", "predict_files", "write_predictions"]
