"""Tandem's core: degrade → reconstruct → diagnose → measure quality, task and fairness."""

__version__ = "0.1.0"
