"""Ready-made initial states (``xlex.cases.warm_bubble(...)``)."""

from xlex.io.cases import warm_bubble

__all__ = ["warm_bubble"]
