"""Retraining fixed genotypes: ``train(cfg, genotype=None, out_dir=None, ...) -> dict`` (see
:func:`unnas.train.run.train` for the returned keys), ``evaluate_checkpoint(path)`` and
``load_network(path)`` (a trained network rebuilt from its checkpoint)."""
from unnas.engine import NonFiniteLossError

from .config import train_defaults, validate_train_cfg
from .run import LoadedNetwork, evaluate_checkpoint, load_network, train
from .trainer import Trainer

__all__ = ["train_defaults", "validate_train_cfg", "Trainer", "NonFiniteLossError", "train", "evaluate_checkpoint",
           "load_network", "LoadedNetwork"]
