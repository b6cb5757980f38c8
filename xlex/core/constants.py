"""Physical constants (SI units), the values CM1 uses so that runs line up with it."""

GRAVITY = 9.81
"""Gravitational acceleration g [m s-2]."""
RD = 287.04
"""Gas constant of dry air [J kg-1 K-1]."""
RV = 461.5
"""Gas constant of water vapour [J kg-1 K-1]."""
CP = 1005.7
"""Specific heat of dry air at constant pressure [J kg-1 K-1]."""
CV = CP - RD
"""Specific heat of dry air at constant volume [J kg-1 K-1]."""
P0 = 1.0e5
"""Reference pressure of the Exner function [Pa]."""
EPS = RD / RV
"""Ratio of gas constants Rd/Rv [1]."""
VIRTUAL = 1.0 / EPS - 1.0
"""Coefficient of qv in the (linearised) density potential temperature, 1/eps - 1 [1]."""
KAPPA = RD / CP
"""Rd/cp [1]."""
LV = 2.501e6
"""Latent heat of vaporisation at 0 C [J kg-1]."""
KARMAN = 0.4
"""von Karman constant [1]."""
