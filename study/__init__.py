"""A platform for hyperparameter studies of inpainting self-supervised pretraining (Dominic et al. 2023)."""

__version__ = "0.1.0"
