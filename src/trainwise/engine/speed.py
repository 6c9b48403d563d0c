"""Optional speed settings of a model: ``torch.compile`` and the channels-last memory format.

Neither is on by default: ``benchmarks/speed_options.py`` measures each against the plain model
with interleaved repeats, and a setting becomes a default only where it wins there.

Example:
    >>> model = speed_options(model, torch.device("cpu"), compile=False, channels_last=True)
"""

from __future__ import annotations

import os
import shutil

import torch
from torch import nn

from trainwise.errors import ConfigError

_CXX_NAMES = ("g++", "c++", "clang++")


def speed_options(model: nn.Module, device: torch.device, *, compile: bool, channels_last: bool) -> nn.Module:
    """``model`` converted to channels-last (4-D conv weights only) and/or compiled in place.

    Raises:
        ConfigError: channels_last for a model without 2-D convolutions, or compile on a CPU without
            a C++ compiler (inductor builds C++ kernels there).
    """
    if channels_last:
        if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
            raise ConfigError("channels_last applies to models with 2-D convolutions (images), and this model has "
                              "none; set train.channels_last=false")
        model = model.to(memory_format=torch.channels_last)
    if compile:
        if device.type == "cpu" and not cxx_compiler():
            raise ConfigError("train.compile=true needs a C++ compiler on the CPU (torch.compile's inductor builds C++ "
                              "kernels) and none was found (g++, c++, clang++ or $CXX); install one (apt-get install "
                              "g++) or set train.compile=false")
        model.compile()
    return model


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would use, or None."""
    names = ([os.environ["CXX"]] if os.environ.get("CXX") else []) + list(_CXX_NAMES)
    return next((path for path in map(shutil.which, names) if path), None)
