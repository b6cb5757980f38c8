"""Ready-made initial states (``xlex.cases.warm_bubble(...)``,
``xlex.cases.convective_boundary_layer(...)``, ``xlex.cases.density_current(...)``)."""

from xlex.io.cases import convective_boundary_layer, density_current, warm_bubble

__all__ = ["convective_boundary_layer", "density_current", "warm_bubble"]
