"""Diagnostic models (the task side of the tandem) and their operating thresholds."""

from recon_core.diagnostics.classifier import Classifier
from recon_core.diagnostics.segmenter import Segmenter
from recon_core.diagnostics.task import TaskModel, TaskOutput, scorer
from recon_core.diagnostics.thresholds import ThresholdError, choose_thresholds
from recon_core.diagnostics.user import UserClassifier, UserSegmenter, study_classifier, study_segmenter

__all__ = ["Classifier", "Segmenter", "TaskModel", "TaskOutput", "ThresholdError", "UserClassifier", "UserSegmenter",
           "choose_thresholds", "scorer", "study_classifier", "study_segmenter"]
