"""Summary statistics for latency samples: percentiles, medians and ratios."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Return the ``fraction`` quantile of ``samples`` with linear interpolation between ranks.

    Parameters
    ----------
    samples:
        At least one value, in any order.
    fraction:
        Quantile between 0 and 1 (0.5 is the median, 0.99 the 99th percentile).

    Returns
    -------
    float
        The interpolated quantile, as numpy's default ``linear`` method computes it.

    Raises
    ------
    ValueError
        If ``samples`` is empty or ``fraction`` is outside [0, 1].
    """
    if not samples:
        raise ValueError("percentile of an empty sample list is undefined: measure at least one value")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction {fraction} is outside [0, 1]")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * fraction
    lower = math.floor(position)
    upper = math.ceil(position)
    if lower == upper:
        return float(ordered[lower])
    weight = position - lower
    return float(ordered[lower] * (1.0 - weight) + ordered[upper] * weight)


@dataclass(frozen=True)
class Summary:
    """Count, median, 99th percentile, mean and extremes of one series, in the series' unit."""

    count: int
    p50: float
    p99: float
    mean: float
    minimum: float
    maximum: float

    def as_dict(self, digits: int = 1) -> dict[str, Any]:
        """Return the fields rounded to ``digits`` decimals, for results.json."""
        return {
            name: (value if isinstance(value, int) else round(value, digits))
            for name, value in asdict(self).items()
        }


def summarize(samples: Sequence[float]) -> Summary:
    """Summarize ``samples`` (at least one value)."""
    return Summary(
        count=len(samples),
        p50=percentile(samples, 0.50),
        p99=percentile(samples, 0.99),
        mean=statistics.fmean(samples),
        minimum=float(min(samples)),
        maximum=float(max(samples)),
    )


def median(samples: Sequence[float]) -> float:
    """Return the median of ``samples`` (at least one value)."""
    return float(statistics.median(samples))


def ratio(numerator: float, denominator: float) -> float:
    """Return ``numerator / denominator``, or infinity when the denominator is not positive."""
    if denominator <= 0:
        return math.inf
    return numerator / denominator
