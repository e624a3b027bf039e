"""LP-SGLD Gaussian experiment with MX formats (docs/mx.md): E θ² per coordinate of N(0, I_32).

Run: python docs/mx_gaussian.py  (refimpl only; prints one line per format, step size and method)
"""
import time

import numpy as np
import refimpl
from refimpl.formats import MXFormat, NVFP4

def run(method, fmt, eta, n_chains=2000, dim=32, s=0.1, seed=11, snaps=6):
    thin = int(round(3.0 / eta))          # ≥ 3 relaxation times 1/η between kept draws
    burn = int(round(5.0 / eta))
    n_steps = burn + thin * snaps
    draws = refimpl.sample(method, "gaussian", dim=dim, n_chains=n_chains, n_steps=n_steps, step_size=eta,
                           seed=seed, fmt=fmt, grad_noise=s, x0=0.0, burn_in=burn, thin=thin)
    draws = np.asarray(draws)
    per_snap = (draws.reshape(draws.shape[0], -1) ** 2).mean(axis=1)   # E θ² per kept step
    m = per_snap.mean()
    se = per_snap.std(ddof=1) / np.sqrt(len(per_snap))
    return m, se, draws.shape

configs = [("MXFP8 E4M3", MXFormat("mxfp8_e4m3"), 0.01), ("MXFP8 E4M3", MXFormat("mxfp8_e4m3"), 0.002), ("MXFP4", MXFormat("mxfp4"), 0.05), ("MXFP4", MXFormat("mxfp4"), 0.125),
           ("NVFP4", NVFP4(), 0.05), ("MXINT8", MXFormat("mxint8"), 0.01)]
s = 0.1
for name, fmt, eta in configs:
    exact = (2 + eta * s * s) / (2 - eta)   # full-precision SGLD stationary variance, U = θ²/2, noisy gradient
    for method in ("sgld", "sgld_lp_l", "sgld_vc"):
        t0 = time.time()
        m, se, shape = run(method, None if method == "sgld" else fmt, eta)
        print(f"{name:11s} eta={eta:<5g} {method:10s} E theta^2 = {m:.4f} ± {se:.4f}   (SGLD exact {exact:.4f}; {shape}; {time.time()-t0:.0f}s)", flush=True)
