"""Per-image metrics (image quality, segmentation) and the metric catalogue; set-level task metrics live in fairness.

Import the submodules directly: the catalogue is read by the store and the pages without torch.
"""
