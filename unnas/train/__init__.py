"""Retraining fixed genotypes: ``train(cfg, genotype=None, out_dir=None, ...) -> dict`` (see
:func:`unnas.train.run.train` for the returned keys) and ``evaluate_checkpoint(path)``."""
from unnas.engine import NonFiniteLossError

from .config import train_defaults, validate_train_cfg
from .run import evaluate_checkpoint, train
from .trainer import Trainer

__all__ = ["train_defaults", "validate_train_cfg", "Trainer", "NonFiniteLossError", "train", "evaluate_checkpoint"]
