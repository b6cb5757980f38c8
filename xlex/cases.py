"""Ready-made initial states (``xlex.cases.warm_bubble(...)``,
``xlex.cases.convective_boundary_layer(...)``)."""

from xlex.io.cases import convective_boundary_layer, warm_bubble

__all__ = ["convective_boundary_layer", "warm_bubble"]
