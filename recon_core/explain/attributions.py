"""Captum attributions of the classifier for one finding: Integrated Gradients and Grad-CAM, batched."""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam

METHODS = ("integrated_gradients", "grad_cam")


def grad_cam_layer(net: torch.nn.Module, image_shape: tuple[int, int]) -> torch.nn.Module:
    """The deepest DenseNet stage whose feature map is still at least 8×8 for this image size.

    The last stage (`norm5`) is 4×4 at 128 px and 1×1 at 32 px: a Grad-CAM there is a blob.
    """
    features = getattr(net, "features", None)
    names = ("norm5", "denseblock3", "denseblock2", "denseblock1")
    if features is None or not all(hasattr(features, n) for n in names):
        raise ValueError(f"Grad-CAM needs a MONAI DenseNet (features.{names}), got {type(net).__name__}")
    sizes: dict[str, int] = {}
    hooks = [getattr(features, n).register_forward_hook(
        lambda _m, _i, out, n=n: sizes.__setitem__(n, min(out.shape[-2:]))) for n in names]
    try:
        with torch.no_grad():
            net(torch.zeros(1, 1, *image_shape, device=next(net.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    chosen = next((n for n in names if sizes[n] >= 8), names[-1])
    return getattr(features, chosen)


def attribute(net: torch.nn.Module, images: torch.Tensor, label_index: int, method: str,
              steps: int = 32) -> np.ndarray:
    """(B, H, W) attribution magnitudes for `label_index`, each map scaled to [0, 1].

    Images (B, 1, H, W) are attributed in one batch on the network's device (CUDA when present).
    Integrated Gradients uses a black baseline; Grad-CAM is upsampled to the image size.
    """
    device = next(net.parameters()).device
    x = images.to(device).float().requires_grad_(True)
    net.eval()
    if method == "integrated_gradients":
        maps = IntegratedGradients(net).attribute(x, baselines=torch.zeros_like(x), target=label_index,
                                                  n_steps=steps, internal_batch_size=max(len(x) * steps // 4, 1))
        maps = maps.abs()
    elif method == "grad_cam":
        layer = grad_cam_layer(net, tuple(x.shape[-2:]))
        cam = LayerGradCam(net, layer).attribute(x, target=label_index, relu_attributions=True)
        maps = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    else:
        raise ValueError(f"unknown attribution method {method!r}; use one of {METHODS}")
    maps = maps.detach()[:, 0]
    peak = maps.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    return (maps / peak).cpu().numpy()
