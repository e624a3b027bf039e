"""Convergence diagnostics of MCMC draws, and export to ArviZ.

Pure NumPy/SciPy implementations of the diagnostics of Vehtari, Gelman, Simpson,
Carpenter & Bürkner, "Rank-normalization, folding, and localization: an improved
R-hat for assessing convergence of MCMC", Bayesian Analysis 16(2), 2021
(arXiv 1903.08008), written to agree with ArviZ (``arviz.rhat``, ``arviz.ess``,
``arviz.mcse``) to rounding, so that the package does not need ArviZ for them:

* :func:`rhat`: rank-normalised split R-hat, the larger of the bulk R-hat (on the
  rank-normalised split chains) and the tail R-hat (on the rank-normalised folded
  draws |θ − median|) (paper §4.1, eqs. (3)-(4) and §4.2);
* :func:`ess_bulk`: effective sample size of the rank-normalised split chains
  (§4.3); :func:`ess_tail`: the smaller ESS of the indicators I(θ ≤ q05) and
  I(θ ≤ q95) (§4.3); :func:`ess_mean`: ESS of the split chains themselves, used for
  the Monte Carlo standard error of the mean;
* ESS uses Geyer's initial monotone sequence on the autocorrelations combined over
  chains (paper eq. (10); Stan's and ArviZ's estimator);
* :func:`mcse_mean` = sd / sqrt(ESS_mean) (paper §4.4).

Layout: every function takes draws **chain-first**, ``(n_chains, n_draws)`` for one
quantity or ``(n_chains, n_draws, *shape)`` (the ArviZ convention); for one quantity a
1-D array ``(n_draws,)`` is one chain.
``refimpl.sample`` returns ``(n_draws, n_chains, dim)``; :func:`chain_first` converts.

ArviZ is optional (``pip install "qlangevin[arviz]"``): :func:`to_inference_data`
builds an ArviZ object (``arviz_base`` (ArviZ 1.x) when installed, else ``arviz``
0.x InferenceData) and :func:`save_draws` writes ``.npz`` (NumPy only) or ``.nc``
(netCDF via ArviZ).
"""

from __future__ import annotations

import numbers
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.fft import next_fast_len
from scipy.special import ndtri
from scipy.stats import rankdata

from refimpl._checks import check_count

__all__ = [
    "SAVE_SUFFIXES",
    "arviz_available",
    "chain_first",
    "check_save_path",
    "ess_bulk",
    "ess_mean",
    "ess_tail",
    "mcse_mean",
    "rhat",
    "rhat_basic",
    "save_draws",
    "summary",
    "to_inference_data",
]

#: file suffixes :func:`save_draws` writes
SAVE_SUFFIXES = (".npz", ".nc")


# --------------------------------------------------------------------------------------
# layout and validation
# --------------------------------------------------------------------------------------
def chain_first(draws: npt.ArrayLike) -> np.ndarray:
    """``refimpl.sample``'s ``(n_draws, n_chains, dim)`` -> chain-first ``(n_chains, n_draws, dim)`` (a view)."""
    x = np.asarray(draws)
    if x.ndim < 2:
        raise ValueError(f"draws must have shape (n_draws, n_chains, ...), got shape {x.shape}")
    return np.swapaxes(x, 0, 1)


def _float_draws(draws, name: str = "draws") -> np.ndarray:
    """``draws`` as a float64 array; TypeError naming ``name`` for text, None, objects, complex."""
    if draws is None or isinstance(draws, (str, bytes)):
        raise TypeError(f"{name} must be an array of real numbers, got {draws!r}")
    x = np.asarray(draws)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {x.dtype}")
    return x.astype(np.float64, copy=False)


def _as_chains(draws, name: str = "draws", min_draws: int = 4) -> np.ndarray:
    """One quantity's draws as float64 (n_chains, n_draws) (a 1-D array is one chain);
    ValueError/TypeError naming ``name`` otherwise."""
    x = _float_draws(draws, name)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n_chains, n_draws) for one quantity, got shape {x.shape}")
    if x.shape[1] < min_draws:
        raise ValueError(f"{name} needs at least {min_draws} draws per chain, got shape {x.shape}")
    return x


def _split_chains(x: np.ndarray) -> np.ndarray:
    """Each chain cut into its first and last halves (the middle draw of an odd length dropped)."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half:]], axis=0)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Rank normalisation (paper eq. (14)): z = Φ⁻¹((r − 3/8)/(S + 1/4)), ranks pooled over all draws."""
    r = rankdata(x, method="average", axis=None).reshape(x.shape)
    return ndtri((r - 0.375) / (x.size + 0.25))


def _degenerate(x: np.ndarray) -> bool:
    return not np.all(np.isfinite(x)) or np.ptp(x) < np.finfo(float).resolution


# --------------------------------------------------------------------------------------
# R-hat
# --------------------------------------------------------------------------------------
def _rhat_core(x: np.ndarray) -> float:
    """Gelman-Rubin R-hat of (m, n) chains: sqrt(((n−1)/n · W + B/n) / W) (paper eqs. (3)-(4))."""
    n = x.shape[1]
    within = np.mean(np.var(x, axis=1, ddof=1))
    between = n * np.var(np.mean(x, axis=1), ddof=1)
    if not within > 0:
        return float("nan")
    return float(np.sqrt((between / within + n - 1) / n))


def rhat_basic(draws: npt.ArrayLike) -> float:
    """Split R-hat without rank normalisation (the "classic" split R-hat, paper §2)."""
    x = _as_chains(draws)
    if _degenerate(x):
        return float("nan")
    return _rhat_core(_split_chains(x))


def rhat(draws: npt.ArrayLike) -> float:
    """Rank-normalised split R-hat (Vehtari et al. 2021 §4.1-4.2): max(bulk R-hat, tail R-hat).

    ``draws``: one quantity, chain-first (n_chains, n_draws) with n_draws >= 4.
    Values above 1.01 say the chains have not mixed.  NaN if every draw is equal
    or a draw is not finite.  Agrees with ``arviz.rhat(..., method="rank")``.
    """
    x = _as_chains(draws)
    if _degenerate(x):
        return float("nan")
    split = _split_chains(x)
    bulk = _rhat_core(_z_scale(split))
    tail = _rhat_core(_z_scale(np.abs(split - np.median(split))))
    return float(max(bulk, tail))


# --------------------------------------------------------------------------------------
# effective sample size
# --------------------------------------------------------------------------------------
def _autocov(x: np.ndarray) -> np.ndarray:
    """Biased autocovariance of each row (divided by n), by FFT."""
    n = x.shape[1]
    m = next_fast_len(2 * n)
    centred = x - x.mean(axis=1, keepdims=True)
    f = np.fft.rfft(centred, n=m, axis=1)
    return np.fft.irfft(f * np.conjugate(f), n=m, axis=1)[:, :n] / n


def _ess_core(x: np.ndarray) -> float:
    """ESS of (m, n) chains: m·n / τ̂, τ̂ = −1 + 2 Σ ρ̂_t by Geyer's initial monotone sequence (eq. (10))."""
    if _degenerate(x):
        return float(x.size) if np.all(np.isfinite(x)) else float("nan")
    m, n = x.shape
    acov = _autocov(x)
    mean_var = np.mean(acov[:, 0]) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus += np.var(x.mean(axis=1), ddof=1)
    rho = np.zeros(n)
    rho_even = 1.0
    rho[0] = rho_even
    rho_odd = 1.0 - (mean_var - np.mean(acov[:, 1])) / var_plus
    rho[1] = rho_odd
    # Geyer's initial positive sequence: sum pairs while their sum stays positive
    t = 1
    while t < n - 3 and rho_even + rho_odd > 0.0:
        rho_even = 1.0 - (mean_var - np.mean(acov[:, t + 1])) / var_plus
        rho_odd = 1.0 - (mean_var - np.mean(acov[:, t + 2])) / var_plus
        if rho_even + rho_odd >= 0:
            rho[t + 1] = rho_even
            rho[t + 2] = rho_odd
        t += 2
    max_t = t - 2
    if rho_even > 0:  # improves the estimate for antithetic chains
        rho[max_t + 1] = rho_even
    # Geyer's initial monotone sequence: the pair sums may not increase
    t = 1
    while t <= max_t - 2:
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = (rho[t - 1] + rho[t]) / 2.0
            rho[t + 2] = rho[t + 1]
        t += 2
    total = m * n
    tau = -1.0 + 2.0 * np.sum(rho[: max_t + 1]) + np.sum(rho[max_t + 1: max_t + 2])
    tau = max(tau, 1.0 / np.log10(total))
    ess = total / tau
    return float("nan") if np.isnan(rho).any() else float(ess)


def ess_bulk(draws: npt.ArrayLike) -> float:
    """Bulk ESS: the ESS of the rank-normalised split chains (Vehtari et al. 2021 §4.3).

    Agrees with ``arviz.ess(..., method="bulk")``; NaN for non-finite draws.
    """
    x = _as_chains(draws)
    if not np.all(np.isfinite(x)):
        return float("nan")
    return _ess_core(_z_scale(_split_chains(x)))


def ess_tail(draws: npt.ArrayLike, prob: float = 0.9) -> float:
    """Tail ESS: min of the ESS of I(θ ≤ q_{(1−prob)/2}) and I(θ ≤ q_{(1+prob)/2}) on split chains (§4.3).

    Agrees with ``arviz.ess(..., method="tail")`` (prob 0.9: the 5% and 95% quantiles).
    """
    if isinstance(prob, (bool, np.bool_)) or not isinstance(prob, numbers.Real) or not 0 < prob < 1:
        raise ValueError(f"prob must be a number in (0, 1), got {prob!r}")
    x = _as_chains(draws)
    if not np.all(np.isfinite(x)):
        return float("nan")
    lo, hi = np.quantile(x, [(1 - prob) / 2, (1 + prob) / 2])
    return min(_ess_core(_split_chains((x <= lo).astype(float))),
               _ess_core(_split_chains((x <= hi).astype(float))))


def ess_mean(draws: npt.ArrayLike) -> float:
    """ESS for the mean: the ESS of the split chains without rank normalisation (``arviz.ess(method="mean")``)."""
    x = _as_chains(draws)
    return _ess_core(_split_chains(x))


def mcse_mean(draws: npt.ArrayLike) -> float:
    """Monte Carlo standard error of the mean: sd / sqrt(ESS_mean) (``arviz.mcse(method="mean")``)."""
    x = _as_chains(draws)
    return float(np.std(x, ddof=1) / np.sqrt(ess_mean(x)))


def summary(draws: npt.ArrayLike, *, max_coords: int | None = None) -> list[dict[str, float]]:
    """Per coordinate of chain-first ``draws`` (n_chains, n_draws[, dim]): a dict with
    ``mean``, ``mcse_mean``, ``sd``, ``m2`` (E[θ²]), ``mcse_m2``, ``rhat``, ``ess_bulk``,
    ``ess_tail``.  ``max_coords``: only the first coordinates (an integer >= 1)."""
    if max_coords is not None:
        max_coords = check_count("max_coords", max_coords, 1)
    x = _float_draws(draws)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"draws must have shape (n_chains, n_draws[, dim]), got shape {x.shape}")
    dim = x.shape[2] if max_coords is None else min(x.shape[2], max_coords)
    rows = []
    for j in range(dim):
        xj = x[:, :, j]
        sq = xj * xj
        rows.append({
            "mean": float(xj.mean()), "mcse_mean": mcse_mean(xj), "sd": float(xj.std(ddof=1)),
            "m2": float(sq.mean()), "mcse_m2": mcse_mean(sq),
            "rhat": rhat(xj), "ess_bulk": ess_bulk(xj), "ess_tail": ess_tail(xj),
        })
    return rows


# --------------------------------------------------------------------------------------
# ArviZ export and saving
# --------------------------------------------------------------------------------------
def _import_arviz():
    """(kind, module): ``("base", arviz_base)`` for ArviZ 1.x, ``("legacy", arviz)`` for 0.x."""
    try:
        import arviz_base

        return "base", arviz_base
    except ImportError:
        pass
    try:
        with warnings.catch_warnings():  # arviz 0.x announces its 1.x refactor on import
            warnings.simplefilter("ignore", FutureWarning)
            import arviz
    except ImportError:
        raise ImportError('ArviZ is not installed: pip install "qlangevin[arviz]"') from None
    return "legacy", arviz


def arviz_available() -> bool:
    """Whether :func:`to_inference_data` can build an ArviZ object here."""
    try:
        _import_arviz()
    except ImportError:
        return False
    return True


def to_inference_data(draws: npt.ArrayLike, *, var_name: str = "x",
                      layout: Literal["draw_chain", "chain_draw"] = "draw_chain",
                      attrs: Mapping[str, Any] | None = None,
                      sample_stats: Mapping[str, Any] | None = None) -> Any:
    """An ArviZ object with the draws in its ``posterior`` group, chain-first (chain, draw, x_dim_0).

    ``draws``: ``refimpl.sample`` output (n_draws, n_chains, dim) with ``layout="draw_chain"``
    (default), or chain-first (n_chains, n_draws, dim) with ``layout="chain_draw"``.
    ``attrs``: run metadata stored on the posterior group; ``sample_stats``: extra per-draw
    arrays in the same layout (e.g. CTLD's alpha).  Returns an ``xarray.DataTree`` from
    ``arviz_base.from_dict`` (ArviZ 1.x) when installed, else an ``arviz.InferenceData``.
    """
    if layout not in ("draw_chain", "chain_draw"):
        raise ValueError(f"layout must be 'draw_chain' or 'chain_draw', got {layout!r}")
    conv = chain_first if layout == "draw_chain" else np.asarray
    posterior = {var_name: np.ascontiguousarray(conv(draws))}
    stats = {k: np.ascontiguousarray(conv(v)) for k, v in (sample_stats or {}).items()}
    clean_attrs = {str(k): (v if isinstance(v, (int, float, str)) else str(v)) for k, v in (attrs or {}).items()}
    kind, az = _import_arviz()
    if kind == "base":
        groups = {"posterior": posterior}
        if stats:
            groups["sample_stats"] = stats
        tree = az.from_dict(groups)
        tree["posterior"].attrs.update(clean_attrs)
        return tree
    idata = az.from_dict(posterior=posterior, sample_stats=stats or None, attrs=clean_attrs)
    return idata


def check_save_path(path: str | os.PathLike[str]) -> Path:
    """Validate a ``--save`` path before a run: suffix .npz or .nc, an existing directory, not a directory.

    Raises ValueError naming the path (and ImportError's message for ``.nc`` without ArviZ).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"--save path must be a str or os.PathLike, got {path!r}")
    p = Path(path)
    if p.suffix not in SAVE_SUFFIXES:
        raise ValueError(f"--save {str(path)!r}: the file name must end in .npz (NumPy) or .nc (netCDF via ArviZ), "
                         f"got {p.suffix or 'no suffix'!r}")
    if p.is_dir():
        raise ValueError(f"--save {str(path)!r} is a directory; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"--save {str(path)!r}: the directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"--save {str(path)!r}: the directory {str(parent)!r} is not writable")
    if p.suffix == ".nc" and not arviz_available():
        raise ValueError(f'--save {str(path)!r}: writing netCDF needs ArviZ (pip install "qlangevin[arviz]"); '
                         "or save as .npz")
    return p


def save_draws(path: str | os.PathLike[str], draws: npt.ArrayLike, *,
               layout: Literal["draw_chain", "chain_draw"] = "draw_chain",
               attrs: Mapping[str, Any] | None = None,
               sample_stats: Mapping[str, Any] | None = None) -> Path:
    """Write draws to ``path``: ``.npz`` (``posterior`` chain-first (chain, draw, dim), every
    ``sample_stats`` array chain-first under its own name, ``attrs`` as 0-d arrays) or ``.nc``
    (netCDF via ArviZ, :func:`to_inference_data`).

    The file is written under a fresh temporary name in the same directory and renamed
    into place, so an existing file is replaced whole or not at all and no planted link
    is followed.  Returns the path.
    """
    if layout not in ("draw_chain", "chain_draw"):
        raise ValueError(f"layout must be 'draw_chain' or 'chain_draw', got {layout!r}")
    p = check_save_path(path)
    conv = chain_first if layout == "draw_chain" else np.asarray
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent if str(p.parent) else ".")
    try:
        if p.suffix == ".npz":
            with os.fdopen(fd, "wb") as fh:
                arrays = {"posterior": np.ascontiguousarray(conv(draws))}
                for k, v in (sample_stats or {}).items():
                    arrays[f"sample_stats_{k}"] = np.ascontiguousarray(conv(v))
                for k, v in (attrs or {}).items():
                    arrays[f"attr_{k}"] = np.asarray(v if isinstance(v, (int, float, str)) else str(v))
                np.savez(fh, **arrays)
        else:
            os.close(fd)
            data = to_inference_data(draws, layout=layout, attrs=attrs, sample_stats=sample_stats)
            _write_netcdf(data, tmp)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p


def _write_netcdf(data, filename: str) -> None:
    """netCDF-4 (groups) through h5netcdf or netCDF4, whichever is installed."""
    for engine, module in (("h5netcdf", "h5netcdf"), ("netcdf4", "netCDF4")):
        try:
            __import__(module)
        except ImportError:
            continue
        data.to_netcdf(filename, engine=engine)
        return
    raise ImportError('writing netCDF needs h5netcdf or netCDF4: pip install "qlangevin[arviz]"')
