"""The PNG chart: per-pod value vs target, desired and ready replicas, per HPA.

matplotlib is optional (``pip install 'inference-metrics-adapter[plot]'``):
:func:`plot` raises :class:`PlotUnavailable` without it, and ``simulate`` still
writes its CSV.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from adapter.simulate.engine import Row

INSTALL_HINT = "pip install 'inference-metrics-adapter[plot]'  (adds matplotlib)"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def plot(path: Path, results: Sequence[tuple[str, Sequence[Row]]], title: str = "") -> None:
    try:
        import matplotlib  # noqa: PLC0415  (optional dependency, imported when used)

        matplotlib.use("Agg")
        from matplotlib import pyplot  # noqa: PLC0415
    except ImportError as e:
        raise PlotUnavailable(f"matplotlib is not installed: {INSTALL_HINT}") from e
    figure, (top, bottom) = pyplot.subplots(2, 1, sharex=True, figsize=(11, 7))
    try:
        targets_drawn: set[tuple[str, float]] = set()
        for label, rows in results:
            for metric in dict.fromkeys(r.metric for r in rows):
                mine = [r for r in rows if r.metric == metric]
                times = [datetime.fromtimestamp(r.time, UTC) for r in mine]
                values = [float("nan") if r.per_pod is None else r.per_pod for r in mine]
                top.plot(times, values, label=f"{label}: {metric} per pod")
                target = mine[0].target
                if (metric, target) not in targets_drawn:
                    targets_drawn.add((metric, target))
                    top.axhline(target, linestyle="--", linewidth=1, label=f"{metric} target")
            first = [r for r in rows if r.metric == rows[0].metric]
            times = [datetime.fromtimestamp(r.time, UTC) for r in first]
            bottom.step(times, [r.desired for r in first], where="post", label=f"{label}: desired")
            bottom.step(times, [r.ready for r in first], where="post", label=f"{label}: ready")
        top.set_ylabel("metric")
        top.legend(loc="upper left", fontsize="small")
        bottom.set_ylabel("replicas")
        bottom.legend(loc="upper left", fontsize="small")
        bottom.set_xlabel("time (UTC)")
        if title:
            figure.suptitle(title)
        figure.tight_layout()
        figure.savefig(path, format="png", dpi=100)
    finally:
        pyplot.close(figure)
