"""Synthetic OHLCV candles and per-bar technical features for the example models.

Two reusable building blocks for the examples in this folder:

* :func:`generate_ohlcv` draws deterministic, synthetic (never real market) 1h
  candles: a geometric random walk whose drift, volatility and mean reversion
  switch between hidden market regimes (range, trend up, trend down, turbulent),
  with volatility clustering, occasional blow-off bars that then retrace, and
  volume that rises with absolute returns.
* :func:`engineer_features` turns candles into a table of named float features
  of the kind a trading system's pattern classifiers consume.

Both are pure functions of their arguments, so the same seed always gives the
same candles and the same features.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "FEATURE_NAMES",
    "OHLCV_COLUMNS",
    "engineer_features",
    "generate_ohlcv",
]

OHLCV_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")

FEATURE_NAMES: tuple[str, ...] = (
    "log_ret_1",
    "log_ret_3",
    "log_ret_12",
    "efficiency_ratio_12",
    "volatility_24",
    "vol_ratio_6_24",
    "rsi_14",
    "macd_hist_norm",
    "bb_pct_b",
    "atr_14_norm",
    "body_ratio",
    "upper_wick_ratio",
    "lower_wick_ratio",
    "volume_zscore_20",
    "dist_high_20",
    "dist_low_20",
)


@dataclass(frozen=True)
class _SymbolProfile:
    """Per-symbol scale of the synthetic market."""

    start_price: float
    vol_scale: float
    base_volume: float


_PROFILES: dict[str, _SymbolProfile] = {
    "BTCUSDT": _SymbolProfile(start_price=30_000.0, vol_scale=1.0, base_volume=1_200.0),
    "ETHUSDT": _SymbolProfile(start_price=2_000.0, vol_scale=1.25, base_volume=15_000.0),
    "ADAUSDT": _SymbolProfile(start_price=0.40, vol_scale=1.6, base_volume=25_000_000.0),
}
_DEFAULT_PROFILE = _SymbolProfile(start_price=100.0, vol_scale=1.3, base_volume=100_000.0)

# Hidden regimes: 0 = range (reverts to a fixed level), 1 = trend up, 2 = trend down,
# 3 = turbulent. Each persists for about 50-100 bars (a Markov chain).
_REGIME_DRIFT = np.array([0.0, 0.0015, -0.0015, 0.0])  # per-bar log drift
_REGIME_SIGMA = np.array([0.0027, 0.0040, 0.0045, 0.0095])  # per-bar log volatility
_REGIME_KAPPA = np.array([0.2, 0.0, 0.0, 0.03])  # pull towards the anchor price
_ANCHOR_SPEED = np.array([0.0, 0.05, 0.05, 0.05])  # how fast the anchor follows price
_REGIME_VOLUME = np.array([0.8, 1.1, 1.3, 2.0])  # activity multiplier
# Blow-off ("climax") bars: a jump in the direction of the recent trend on heavy
# volume with a long rejection wick, followed by a few bars of drift back.
_CLIMAX_PROB = np.array([0.005, 0.04, 0.04, 0.04])  # per bar, by regime
_CLIMAX_JUMP = 4.0  # size of the climax move, in bar sigmas
_CLIMAX_REVERT = 1.0  # drift back per bar afterwards, in bar sigmas
_CLIMAX_BARS = 6  # how long the drift back lasts
_REGIME_TRANSITIONS = np.array(
    [
        [0.990, 0.004, 0.004, 0.002],
        [0.007, 0.990, 0.001, 0.002],
        [0.007, 0.001, 0.990, 0.002],
        [0.012, 0.004, 0.004, 0.980],
    ]
)


def _symbol_seed(symbol: str, seed: int) -> np.random.SeedSequence:
    """Return a seed sequence that is stable across runs and distinct per symbol."""
    return np.random.SeedSequence([seed, zlib.crc32(symbol.encode("utf-8"))])


def generate_ohlcv(symbol: str, n_bars: int, seed: int) -> pd.DataFrame:
    """Generate ``n_bars`` synthetic hourly candles for ``symbol``.

    The close follows a geometric random walk whose drift, volatility and mean
    reversion switch between four persistent hidden regimes (a Markov chain),
    with GARCH-like volatility clustering on top. Now and then a blow-off bar
    jumps in the direction of the recent trend on heavy volume with a long
    rejection wick, and the following bars retrace it. Opens continue from the
    previous close (crypto trades around the clock), wicks extend beyond the
    candle body, and volume grows with the bar's absolute return.

    Returns a frame indexed by a UTC hourly ``timestamp`` with float columns
    ``open``, ``high``, ``low``, ``close`` and ``volume`` that satisfy
    ``high >= max(open, close)``, ``low <= min(open, close)`` and ``volume > 0``.
    """
    if n_bars < 2:
        raise ValueError(f"n_bars must be at least 2, got {n_bars}")
    profile = _PROFILES.get(symbol, _DEFAULT_PROFILE)
    rng = np.random.default_rng(_symbol_seed(symbol, seed))

    shocks = rng.standard_normal(n_bars)
    regime_draws = rng.random(n_bars)
    vol_shocks = rng.standard_normal(n_bars)
    climax_draws = rng.random(n_bars)

    regimes = np.empty(n_bars, dtype=np.int64)
    climax = np.zeros(n_bars, dtype=bool)
    climax_sign = np.zeros(n_bars)
    log_close = np.empty(n_bars)
    sigmas = np.empty(n_bars)
    cumulative = np.cumsum(_REGIME_TRANSITIONS, axis=1)

    regime = 0
    log_vol = 0.0  # log multiplier on the regime volatility (clustering)
    price = float(np.log(profile.start_price))
    anchor = price  # level the range regime reverts to (frozen while in range)
    revert_left, revert_drift = 0, 0.0
    for t in range(n_bars):
        regime = int(np.searchsorted(cumulative[regime], regime_draws[t]))
        regime = min(regime, len(_REGIME_DRIFT) - 1)
        log_vol = 0.94 * log_vol + 0.12 * vol_shocks[t]
        sigma = _REGIME_SIGMA[regime] * profile.vol_scale * float(np.exp(log_vol))
        pull = _REGIME_KAPPA[regime] * (anchor - price)
        step = _REGIME_DRIFT[regime] * profile.vol_scale + pull + sigma * shocks[t]
        if revert_left > 0:
            step += revert_drift * sigma
            revert_left -= 1
        elif t >= 12 and climax_draws[t] < _CLIMAX_PROB[regime]:
            direction = 1.0 if price >= log_close[t - 12] else -1.0
            step += direction * _CLIMAX_JUMP * sigma
            revert_left, revert_drift = _CLIMAX_BARS, -direction * _CLIMAX_REVERT
            climax[t], climax_sign[t] = True, direction
        price += step
        anchor += _ANCHOR_SPEED[regime] * (price - anchor)
        regimes[t] = regime
        log_close[t] = price
        sigmas[t] = sigma

    close = np.exp(log_close)
    prev_close = np.concatenate(([profile.start_price], close[:-1]))
    gap = np.exp(0.05 * sigmas * rng.standard_normal(n_bars))
    open_ = prev_close * gap

    body_top = np.maximum(open_, close)
    body_bottom = np.minimum(open_, close)
    # Climax bars get a long wick on the side the move was rejected from.
    upper_scale = 0.6 + 1.5 * (climax & (climax_sign > 0))
    lower_scale = 0.6 + 1.5 * (climax & (climax_sign < 0))
    high = body_top * np.exp(upper_scale * sigmas * np.abs(rng.standard_normal(n_bars)))
    low = body_bottom * np.exp(-lower_scale * sigmas * np.abs(rng.standard_normal(n_bars)))

    abs_move = np.abs(np.log(close / open_)) / (_REGIME_SIGMA[0] * profile.vol_scale)
    volume = (
        profile.base_volume
        * _REGIME_VOLUME[regimes]
        * np.where(climax, 2.5, 1.0)
        * (1.0 + 0.6 * abs_move)
        * np.exp(0.35 * rng.standard_normal(n_bars))
    )

    index = pd.date_range("2023-01-01", periods=n_bars, freq="h", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume},
        index=index,
    )


def _wilder(series: pd.Series, period: int) -> pd.Series:
    """Wilder's smoothing (an EMA with ``alpha = 1 / period``), NaN during warm-up."""
    return series.ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()


def engineer_features(ohlcv: pd.DataFrame) -> pd.DataFrame:
    """Compute per-bar technical features from an OHLCV frame.

    Every feature only looks at the current and past bars, so it is available
    when the bar closes. Returns one float64 column per name in
    :data:`FEATURE_NAMES` (in that order), on the same index as ``ohlcv`` minus
    the warm-up rows at the start where some indicator is still undefined.
    """
    missing = [col for col in OHLCV_COLUMNS if col not in ohlcv.columns]
    if missing:
        raise ValueError(f"ohlcv frame lacks columns: {missing}")
    o, h, lo, c, v = (ohlcv[col].astype("float64") for col in OHLCV_COLUMNS)

    log_close = np.log(c)
    log_ret_1 = log_close.diff()
    volatility_24 = log_ret_1.rolling(24).std()

    # RSI(14), Wilder's definition, scaled to [0, 1].
    avg_gain = _wilder(log_ret_1.clip(lower=0.0), 14)
    avg_loss = _wilder((-log_ret_1).clip(lower=0.0), 14)
    rsi_14 = avg_gain / (avg_gain + avg_loss)

    # MACD(12, 26, 9) histogram relative to price.
    ema_fast = c.ewm(span=12, adjust=False, min_periods=12).mean()
    ema_slow = c.ewm(span=26, adjust=False, min_periods=26).mean()
    macd = ema_fast - ema_slow
    signal = macd.ewm(span=9, adjust=False, min_periods=9).mean()
    macd_hist_norm = (macd - signal) / c

    # Bollinger %b with a 20-bar, 2-sigma band.
    mid = c.rolling(20).mean()
    band = 2.0 * c.rolling(20).std()
    bb_pct_b = (c - (mid - band)) / (2.0 * band)

    # Average true range relative to price.
    true_range = pd.concat([h - lo, (h - c.shift()).abs(), (lo - c.shift()).abs()], axis=1).max(
        axis=1
    )
    atr_14_norm = _wilder(true_range, 14) / c

    # Candle anatomy; a zero-range candle has undefined ratios and is dropped.
    bar_range = (h - lo).where(h > lo)
    body_ratio = (c - o) / bar_range
    upper_wick_ratio = (h - np.maximum(o, c)) / bar_range
    lower_wick_ratio = (np.minimum(o, c) - lo) / bar_range

    log_volume = np.log(v)
    volume_zscore_20 = (log_volume - log_volume.rolling(20).mean()) / log_volume.rolling(20).std()

    features = pd.DataFrame(
        {
            "log_ret_1": log_ret_1,
            "log_ret_3": log_close.diff(3),
            "log_ret_12": log_close.diff(12),
            "efficiency_ratio_12": log_close.diff(12).abs() / log_ret_1.abs().rolling(12).sum(),
            "volatility_24": volatility_24,
            "vol_ratio_6_24": log_ret_1.rolling(6).std() / volatility_24,
            "rsi_14": rsi_14,
            "macd_hist_norm": macd_hist_norm,
            "bb_pct_b": bb_pct_b,
            "atr_14_norm": atr_14_norm,
            "body_ratio": body_ratio,
            "upper_wick_ratio": upper_wick_ratio,
            "lower_wick_ratio": lower_wick_ratio,
            "volume_zscore_20": volume_zscore_20,
            "dist_high_20": c / h.rolling(20).max() - 1.0,
            "dist_low_20": c / lo.rolling(20).min() - 1.0,
        },
        index=ohlcv.index,
    )
    features = features.replace([np.inf, -np.inf], np.nan).dropna()
    return features.astype("float64")[list(FEATURE_NAMES)]
