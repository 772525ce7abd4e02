"""Optimizers (update parameters in place from their gradients) and learning-rate
schedulers, with PyTorch's names, arguments and update rules (`torch.optim`)."""
from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
