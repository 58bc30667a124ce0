"""Retraining fixed genotypes: ``train(cfg, genotype=None, out_dir=None, ...) -> dict`` (see
:func:`unnas.train.trainer.train` for the returned keys) and ``evaluate_checkpoint(path)``."""
from .config import train_defaults, validate_train_cfg
from .trainer import NonFiniteLossError, Trainer, evaluate_checkpoint, train

__all__ = ["train_defaults", "validate_train_cfg", "Trainer", "NonFiniteLossError", "train", "evaluate_checkpoint"]
