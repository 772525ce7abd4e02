"""Modules, as torch.nn: the Module base class, layers, containers, losses, and
`nn.utils` (gradient clipping)."""
from . import utils
from .containers import ModuleDict, ModuleList, ParameterList, Sequential
from .layers import (Dropout, Flatten, Identity, Linear, LogSoftmax, ReLU, Sigmoid, Softmax,
                     Tanh)
from .loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from .module import Module, StateDictError

__all__ = ["Module", "StateDictError", "Sequential", "ModuleList", "ModuleDict",
           "ParameterList", "Linear", "Identity", "Flatten", "Dropout", "Sigmoid", "Tanh",
           "ReLU", "Softmax", "LogSoftmax", "MSELoss", "L1Loss", "CrossEntropyLoss",
           "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "utils"]
