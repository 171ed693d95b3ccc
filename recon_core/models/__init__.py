"""The one model contract (fit-or-load, checkpoints, training batches with rows, the training loop) and losses."""

from recon_core.models.batches import SplitData, TrainingBatch
from recon_core.models.checkpoints import CheckpointError
from recon_core.models.contract import TrainableModel

__all__ = ["CheckpointError", "SplitData", "TrainableModel", "TrainingBatch"]
