"""Training: the trainer loop, losses, heads, optimizers, checkpoints."""

from ..errors import RunDirError
from .checkpoint import latest_checkpoint, load_checkpoint, load_trainable_state, trainable_state
from .heads import CosineClassifier, init_head_from_class_means
from .losses import ClassBalancedCE, FocalLoss, LogitAdjustedLoss, build_loss
from .trainer import RunResult, Trainer

__all__ = ["ClassBalancedCE", "CosineClassifier", "FocalLoss", "LogitAdjustedLoss", "RunDirError", "RunResult",
           "Trainer", "build_loss", "init_head_from_class_means", "latest_checkpoint", "load_checkpoint",
           "load_trainable_state", "trainable_state"]
