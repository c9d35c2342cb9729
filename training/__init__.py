"""Training: labeled transactions -> Feast features -> CV and holdout -> MLflow registry.

Short phases, one module each, called in one direction by :mod:`training.run`:
:mod:`training.dataset` -> :mod:`training.evaluation` (with :mod:`training.model`, the model
seam) -> :mod:`training.registry` (champion/challenger) and :mod:`training.run_log` (MLflow).
"""
