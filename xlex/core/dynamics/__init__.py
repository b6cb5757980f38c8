"""Dynamical core: advection, pressure, tendencies."""
