"""Built-in models (mlp, cnn, resnet, gru, lstm) and user models from ``package.module:factory``.

Example:
    >>> from trainwise.models import build_model
    >>> model = build_model("mlp", input_shape=(64,), num_outputs=10, hidden=[32])
    >>> model.trainwise_activation
    'relu'
"""

from __future__ import annotations

from trainwise.models.cnn import CNN
from trainwise.models.factory import (
    DEFAULT_CHANNELS,
    DEFAULT_HIDDEN,
    MODEL_NAMES,
    activation_of,
    build_model,
    load_user_model,
)
from trainwise.models.layers import ACTIVATIONS, CONV_NORMS, DENSE_NORMS, POOLS
from trainwise.models.mlp import MLP
from trainwise.models.recurrent import RecurrentNet
from trainwise.models.resnet import BasicBlock, ResNet

__all__ = [
    "ACTIVATIONS",
    "CNN",
    "CONV_NORMS",
    "DEFAULT_CHANNELS",
    "DEFAULT_HIDDEN",
    "DENSE_NORMS",
    "MLP",
    "MODEL_NAMES",
    "POOLS",
    "BasicBlock",
    "RecurrentNet",
    "ResNet",
    "activation_of",
    "build_model",
    "load_user_model",
]
