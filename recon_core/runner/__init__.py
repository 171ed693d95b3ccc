"""Training and sweeps: plans the (reconstructor × level) cells, batches, resumes."""

from recon_core.runner.study import TrainedModels, prepare, run_study, train_models

__all__ = ["TrainedModels", "prepare", "run_study", "train_models"]
