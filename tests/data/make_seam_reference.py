"""Reference outputs written by xlex 0.1.0 (before the scheme seam)."""
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np, xarray as xr, xlex, shutil
from pathlib import Path
out = Path("/work/main/tests/data")
ds0 = xlex.cases.warm_bubble(theta_c=5.0, dx=1000.0)
schemes = {
  "none": {},
  "smagorinsky": dict(sgs="smagorinsky", cs=0.2, prandtl=0.4),
  "dynamic": dict(sgs="dynamic", stability=False),
  "bulk": dict(sgs="smagorinsky", surface="bulk", surface_potential_temperature=302.0, roughness_length=0.05, moisture_availability=0.5),
  "coriolis": dict(coriolis=1e-3, geostrophic_u=2.0, geostrophic_v=-1.0),
  "bicgstab_weno": dict(solver="bicgstab", momentum_advection="weno5", vertical_order=3),
}
final = {}
for name, opts in schemes.items():
    r = ds0.lex.integrate("10min", dt=10.0, output_every="5min", precision="float64", progress=False, **opts)
    last = r.isel(time=-1)
    for v in ("u","v","w","th","qv","pipert") + tuple(k for k in ("km","kh","cs2","hfx","qfx","ustar","taux","tauy","lhf") if k in r):
        final[f"{name}__{v}"] = last[v].drop_vars([c for c in last[v].coords if c=="time"])
    if name == "bulk":
        p = out / "legacy_store_v0_1_0.nc"
        if p.exists(): p.unlink()
        ds0.lex.integrate("5min", dt=10.0, output_every="5min", precision="float64", progress=False, store=p, **opts)
ref = xr.Dataset(final)
ref.attrs["about"] = "float64 warm bubble 5 K, dx 1000 m, dt 10 s, state at 10 min, written by xlex 0.1.0 before the scheme seam; variables are <scheme>__<field>"
enc = {k: {"zlib": True, "complevel": 9} for k in ref.data_vars}
ref.to_netcdf(out / "seam_reference_v0_1_0.nc", encoding=enc)
print(ref)
