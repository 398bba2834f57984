"""Temporal filters for landmark streams.

The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) is a low-pass filter
whose cutoff rises with the signal's speed: still landmarks lose their jitter,
fast ones (a mouth opening) keep up with little lag.
"""

from __future__ import annotations

import numpy as np


def _smoothing(cutoff: np.ndarray | float, rate: float) -> np.ndarray | float:
    tau = 1.0 / (2 * np.pi * cutoff)
    return 1.0 / (1.0 + tau * rate)


class OneEuroFilter:
    """Filters arrays of any fixed shape, element-wise, at `rate` samples per second.

    `min_cutoff` (Hz, scalar or broadcastable to the signal) sets the smoothing of a
    still signal; `beta` how fast the cutoff rises with speed (per signal unit per
    second). `reset(value)` starts over (a scene cut): the next output is the input.
    """

    def __init__(self, rate: float, min_cutoff=1.0, beta: float = 0.0, derivative_cutoff: float = 1.0):
        if rate <= 0:
            raise ValueError("the sample rate must be positive")
        self.rate = float(rate)
        self.min_cutoff = np.asarray(min_cutoff, dtype=np.float64)
        self.beta = float(beta)
        self.derivative_cutoff = float(derivative_cutoff)
        self._value: np.ndarray | None = None
        self._speed: np.ndarray | None = None

    def reset(self, value: np.ndarray | None = None) -> None:
        self._value = None if value is None else np.array(value, dtype=np.float64)
        self._speed = None if value is None else np.zeros_like(self._value)

    def hold(self, value: np.ndarray) -> None:
        """Replace the filtered value (not the speed), e.g. after limiting its lag."""
        self._value = np.array(value, dtype=np.float64)

    def __call__(self, value: np.ndarray) -> np.ndarray:
        value = np.asarray(value, dtype=np.float64)
        if self._value is None:
            self.reset(value)
            return value.copy()
        speed = (value - self._value) * self.rate
        a = _smoothing(self.derivative_cutoff, self.rate)
        self._speed = self._speed + a * (speed - self._speed)
        cutoff = self.min_cutoff + self.beta * np.abs(self._speed)
        alpha = _smoothing(cutoff, self.rate)
        self._value = self._value + alpha * (value - self._value)
        return self._value.copy()
