"""trainwise: the practices every deep-learning guide preaches, as the default."""

from __future__ import annotations

__version__ = "0.1.0"
