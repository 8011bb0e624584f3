"""Errors a user can cause. Each says what went wrong and what to do about it.

The CLI prints these as one line (no traceback unless ``--debug``) and exits non-zero.
"""

from __future__ import annotations


class FedMetaMalError(Exception):
    """Base of every error caused by user input (files, configs, data)."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} {fix}" if fix else problem)


class ConfigError(FedMetaMalError):
    """A configuration value is invalid or missing."""


class DataError(FedMetaMalError):
    """A dataset file is missing, malformed or unusable for training."""


class PartitionError(FedMetaMalError):
    """A federation cannot be built with the requested partition."""


class TrainingDivergedError(FedMetaMalError):
    """Training produced non-finite values (NaN or inf)."""

    exit_code = 3
