"""Diagnostic models and their operating thresholds."""

from recon_core.diagnostics.classifier import Classifier
from recon_core.diagnostics.thresholds import ThresholdError, choose_thresholds

__all__ = ["Classifier", "ThresholdError", "choose_thresholds"]
