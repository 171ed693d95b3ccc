"""`zero_filled`: MRI's floor — the magnitude of the inverse FFT of the undersampled k-space, unfilled."""

from __future__ import annotations

from recon_core.reconstructors.identity import Identity


class ZeroFilled(Identity):
    """The degraded image of k-space physics is already the zero-filled reconstruction; returned unchanged."""

    name = "zero_filled"
