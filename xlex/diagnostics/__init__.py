"""Diagnostics array core: comparison metrics, (MS-)SSIM, KE profiles, coarse-graining.

Never imports xarray: every function takes NumPy or JAX arrays (the namespace
follows the inputs) and reduces over explicitly given trailing spatial axes,
so leading axes (time, ensemble member, section) are handled at once. The
Dataset-level versions live in :mod:`xlex.compare` (metrics),
:mod:`xlex.profiles` (KE profile) and :mod:`xlex.transforms` (coarsening).
"""

from xlex.diagnostics.coarsen import (
    block_mean,
    coarsen_array,
    coarsen_centred,
    coarsen_u,
    coarsen_v,
    coarsen_w,
    mass_weight,
)
from xlex.diagnostics.metrics import array_namespace, correlation, mse
from xlex.diagnostics.profiles import centre_velocities, ke_profile
from xlex.diagnostics.ssim import (
    MS_SSIM_WEIGHTS,
    default_data_range,
    gaussian_window,
    max_scales,
    ms_ssim,
    ssim,
)

__all__ = [
    "MS_SSIM_WEIGHTS",
    "array_namespace",
    "block_mean",
    "centre_velocities",
    "coarsen_array",
    "coarsen_centred",
    "coarsen_u",
    "coarsen_v",
    "coarsen_w",
    "correlation",
    "default_data_range",
    "gaussian_window",
    "ke_profile",
    "mass_weight",
    "max_scales",
    "ms_ssim",
    "mse",
    "ssim",
]
