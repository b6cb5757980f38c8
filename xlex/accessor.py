"""The ``ds.lex`` accessor: thin, returns new objects, never mutates the Dataset."""

from __future__ import annotations

import xarray as xr

from xlex import compare, profiles, runner, transforms


@xr.register_dataset_accessor("lex")
class LexAccessor:
    """xlex methods on any Dataset that meets the xlex contract.

    Registered on ``import xlex``. Every method returns a new object.
    """

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def integrate(self, duration, *, dt, output_every, physics=None, precision="float32",
                  progress=True, store=None, overwrite=False, devices=None,
                  **options) -> xr.Dataset:
        """Integrate the state forward in time.

        The last record along ``time`` (or the Dataset itself if it has no
        time axis) is the initial state; extra leading dims (e.g. ``member``)
        are integrated at once as an ensemble. The time loop is a compiled
        ``lax.scan`` per output interval (on a CPU, split into chunks of a few
        seconds so that the progress bar moves; the records are the same bit
        for bit), compiled once per configuration (grid, choice of schemes, dt,
        output interval) and process: a second run of the same configuration,
        even with other parameter values, compiles nothing.

        Parameters
        ----------
        duration : float or str
            Length of the run: seconds, or a string such as ``"20min"``.
        dt : float or str
            Time step [s]; must divide ``output_every``.
        output_every : float or str
            Output interval; must divide ``duration``.
        physics : xlex.Physics, optional
            Every scheme of the run in one object. Default: the physics the
            Dataset records (``xlex_physics``, written by xlex and by the cases)
            or, if none, ``xlex.Physics()`` (upwind advection, PCG pressure
            solver, no subgrid, surface or rotation scheme).
        precision : {'float32', 'float64'}
            Floating-point precision of the run.
        progress : bool
            Show a tqdm progress bar.
        store : str or Path, optional
            NetCDF file (``.nc``) to which every output record is written and
            flushed as soon as it is computed, so that after a crash, a kill or
            Ctrl-C the file holds every completed record; continue it with
            :func:`xlex.runner.resume`. The run then keeps no record in memory
            after writing it, and returns the store read lazily (dask arrays,
            :func:`xlex.io.store.open_store_lazily`): a long run's memory does
            not grow with its number of outputs.
        overwrite : bool
            Replace an existing ``store``; without it an existing file is an error.
        devices : int or list of jax devices, optional
            Split the run over several devices (default: one): a single run
            into slabs along y (``ny`` must divide into slabs of at least 3
            rows), an ensemble by members. Results equal the single-device run
            to round-off; outputs are gathered at each output time. See
            docs/parallel.md.
        **options
            A slot of :class:`xlex.Physics` (``advection``, ``pressure``,
            ``rotation``, ``sgs``, ``surface``) as a scheme object, e.g.
            ``sgs=xlex.Smagorinsky(cs=0.2)``, a shorthand name (``sgs="smagorinsky"``,
            ``"dynamic"``, ``"none"``; ``surface="bulk"``) or None (no scheme); and
            shorthand options (:data:`xlex.options.SHORTHANDS`), e.g. ``cs=0.2``,
            ``solver="bicgstab"``, ``tolerance``, ``vertical_order``,
            ``coriolis`` [s-1]. A slot or option not named keeps what the Dataset
            records; a shorthand option without its slot changes only that field.

        Returns
        -------
        xarray.Dataset
            States at the start and at every output time (``time`` in s),
            with u, v, w, th, qv, pipert, thpert, qvpert, thrho, the base
            state, ``pressure_iterations`` and ``pressure_residual`` (the largest
            divergence a projection left since the previous output, relative
            to the divergence it removed), and every option in the attributes.
            If interrupted (Ctrl-C), the outputs completed so far, with
            ``xlex_status = "interrupted"``.

        Raises
        ------
        xlex.core.errors.DatasetError
            The Dataset does not meet the contract.
        xlex.core.errors.OptionError
            A bad option, a duration that is not a multiple of ``output_every``,
            or (``CFLError``) a ``dt`` that breaks the CFL limit.
        xlex.core.errors.BlowUpError
            The run produced NaN/Inf or exceeded the CFL limit; the outputs
            before it are in the error's ``outputs``.

        Examples
        --------
        >>> ds0 = xlex.cases.warm_bubble(theta_c=5.0, dx=400.0)
        >>> out = ds0.lex.integrate("10min", dt=12.0, output_every="1min")
        >>> les = ds0.lex.integrate("10min", dt=12.0, output_every="1min",
        ...                         sgs=xlex.Smagorinsky(cs=0.2))
        """
        return runner.integrate(self._ds, duration, dt=dt, output_every=output_every,
                                physics=physics, precision=precision, progress=progress,
                                store=store, overwrite=overwrite, devices=devices, **options)

    def correlation(self, other: xr.Dataset, var: str) -> xr.DataArray:
        """Pearson correlation with ``other`` over all grid points, per time (paper eq. 27).
        See :func:`xlex.compare.correlation`."""
        return compare.correlation(self._ds, other, var)

    def mse(self, other: xr.Dataset, var: str) -> xr.DataArray:
        """Mean squared error against ``other``, per time. See :func:`xlex.compare.mse`."""
        return compare.mse(self._ds, other, var)

    def ms_ssim(self, other: xr.Dataset, var: str, **kwargs) -> xr.DataArray:
        """Multi-scale SSIM against ``other`` on 2-D sections, per time.
        See :func:`xlex.compare.ms_ssim` for ``plane``, ``at``, ``data_range``, ``scales``."""
        return compare.ms_ssim(self._ds, other, var, **kwargs)

    def ke_profile(self, *, window=None) -> xr.DataArray:
        """Resolved kinetic-energy profile KE(z) (paper eq. 28). See
        :func:`xlex.compare.ke_profile`."""
        return profiles.ke_profile(self._ds, window=window)

    def coarsen(self, *, x=6, y=6, z=3, every=None) -> xr.Dataset:
        """Staggering-aware coarse-graining by (x, y, z) cells and every k-th time.
        See :func:`xlex.compare.coarsen`."""
        return transforms.coarsen(self._ds, x=x, y=y, z=z, every=every)

    def plot_section(self, var: str = "thpert", *, times=None, y=None, **kwargs):
        """x-z sections of ``var`` through ``y`` [m] (default the domain centre) at
        ``times`` [s], in a row (the paper's Figure 2). Returns a matplotlib Figure.
        See :func:`xlex.plot.plot_section`."""
        from xlex import plot
        return plot.plot_section(self._ds, var, times=times, y=y, **kwargs)
