"""xlex: a differentiable, GPU-ready large-eddy simulation model in JAX, driven from xarray."""

__version__ = "0.1.0"
