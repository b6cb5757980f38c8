"""The pure-JAX core of xlex: grid, state, thermodynamics, operators, dynamics,
physics schemes, time stepping and the model that sums them.

Nothing here imports xarray, netCDF4, tqdm or any xlex module outside
``xlex.core`` (``tests/test_layout.py`` checks it): the edges convert
Datasets to and from the arrays and pytrees defined here.
"""
