"""Captum attributions of a diagnostic model's evidence: Integrated Gradients and Grad-CAM, batched.

The model says what its answer rests on (`TaskModel.evidence`: a finding's logit for the
classifier, the mean tumour probability for the segmenter), so a failure case is explained by
the model whose answer changed.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam

from recon_core.diagnostics.task import TaskModel

METHODS = ("integrated_gradients", "grad_cam")
GRAD_CAM_STAGES = ("norm5", "denseblock3", "denseblock2", "denseblock1")
"""Grad-CAM needs a convolutional stage to read: the DenseNet stages, deepest first."""


def methods_for(model: TaskModel) -> tuple[str, ...]:
    """The attribution methods a model supports: Grad-CAM only where it has DenseNet stages."""
    features = getattr(model.net, "features", None)
    has_stages = features is not None and all(hasattr(features, n) for n in GRAD_CAM_STAGES)
    return METHODS if has_stages else ("integrated_gradients",)


def grad_cam_layer(net: torch.nn.Module, image_shape: tuple[int, int]) -> torch.nn.Module:
    """The deepest DenseNet stage whose feature map is still at least 8×8 for this image size.

    The last stage (`norm5`) is 4×4 at 128 px and 1×1 at 32 px: a Grad-CAM there is a blob.
    """
    features = getattr(net, "features", None)
    if features is None or not all(hasattr(features, n) for n in GRAD_CAM_STAGES):
        raise ValueError(f"Grad-CAM needs a MONAI DenseNet (features.{GRAD_CAM_STAGES}), got {type(net).__name__}")
    sizes: dict[str, int] = {}
    hooks = [getattr(features, n).register_forward_hook(
        lambda _m, _i, out, n=n: sizes.__setitem__(n, min(out.shape[-2:]))) for n in GRAD_CAM_STAGES]
    try:
        with torch.no_grad():
            net(torch.zeros(1, 1, *image_shape, device=next(net.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    chosen = next((n for n in GRAD_CAM_STAGES if sizes[n] >= 8), GRAD_CAM_STAGES[-1])
    return getattr(features, chosen)


def attribute(model: TaskModel, images: torch.Tensor, label: str | None, method: str, steps: int = 32) -> np.ndarray:
    """(B, H, W) attribution magnitudes of `model`'s evidence (for finding `label`), each map scaled to [0, 1].

    Images (B, 1, H, W) are attributed in one batch on the model's device (CUDA when present).
    Integrated Gradients uses a black baseline; Grad-CAM is upsampled to the image size.
    """
    net = model.net
    device = model.device  # not a parameter's: a user's model may have none
    x = images.to(device).float().requires_grad_(True)
    net.eval()
    evidence = model.evidence(label)
    if method == "integrated_gradients":
        maps = IntegratedGradients(evidence).attribute(x, baselines=torch.zeros_like(x), n_steps=steps,
                                                       internal_batch_size=max(len(x) * steps // 4, 1))
        maps = maps.abs()
    elif method == "grad_cam":
        layer = grad_cam_layer(net, tuple(x.shape[-2:]))
        cam = LayerGradCam(evidence, layer).attribute(x, relu_attributions=True)
        maps = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    else:
        raise ValueError(f"unknown attribution method {method!r}; use one of {methods_for(model)}")
    maps = maps.detach()[:, 0]
    peak = maps.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    return (maps / peak).cpu().numpy()
