"""Gradient estimators: one module per family, each a frozen dataclass of hyperparameters."""

from snrkit.estimators.base import Estimator
from snrkit.estimators.forward import ForwardGradient
from snrkit.estimators.partitioned import BlockIds, Partitioned

__all__ = ["Estimator", "ForwardGradient", "Partitioned", "BlockIds"]
