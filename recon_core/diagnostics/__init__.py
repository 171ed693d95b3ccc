"""Diagnostic models (the task side of the tandem) and their operating thresholds."""

from recon_core.diagnostics.classifier import Classifier
from recon_core.diagnostics.segmenter import Segmenter
from recon_core.diagnostics.task import TaskModel, TaskOutput, scorer
from recon_core.diagnostics.thresholds import ThresholdError, choose_thresholds

__all__ = ["Classifier", "Segmenter", "TaskModel", "TaskOutput", "ThresholdError", "choose_thresholds",
           "scorer"]
