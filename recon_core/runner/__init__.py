"""Training and sweeps: plans the (reconstructor × level) cells, batches, resumes."""

from recon_core.runner.study import TrainedModels, run_study, train_models

__all__ = ["TrainedModels", "run_study", "train_models"]
