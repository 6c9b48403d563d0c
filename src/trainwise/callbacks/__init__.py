"""Callbacks: one class per file, each hooked on the loop's events."""

from trainwise.callbacks.base import EVENTS, Callback, Logger, LoggerUnavailable
from trainwise.callbacks.checkpoint_saver import CheckpointSaver
from trainwise.callbacks.early_stopping import EarlyStopping
from trainwise.callbacks.freezing import ModuleFreezer
from trainwise.callbacks.progress import ProgressBar

__all__ = ["EVENTS", "Callback", "CheckpointSaver", "EarlyStopping", "Logger", "LoggerUnavailable", "ModuleFreezer",
           "ProgressBar"]
