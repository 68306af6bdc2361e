"""The report's figures: curves by round with their spread over seeds, improvement against threshold,
precision and recall at k, and a confusion matrix.

Every figure is a ``matplotlib.figure.Figure`` on the Agg canvas, never ``pyplot``: no global
state and no GUI backend, so reports can be drawn in workers and servers. The functions take the
summary frames of :mod:`pseudolabel.report` (one row per curve and round, ``<metric>_mean``,
``<metric>_std``, ``n_runs``) and write one PNG each.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pandas as pd

__all__ = ["plot_by_round", "plot_confidence_accuracy", "plot_improvement", "plot_precision_recall_at_k",
           "plot_confusion"]

CURVE_KEYS = ["source", "labeled", "mode", "threshold"]
_STYLES = ["-", "--", ":", "-."]
_DPI = 110


def _colormap(name: str):
    # matplotlib takes most of a second to import: loaded when a figure is drawn, not with the module.
    from matplotlib import colormaps

    return colormaps[name]


def _figure(n_panels: int, *, panel_size=(4.6, 3.4), ncols: int = 3):
    # matplotlib takes most of a second to import: loaded when a figure is drawn, not with the module.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(panel_size[0] * ncols + 0.6, panel_size[1] * nrows + 1.0), dpi=_DPI,
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes[:n_panels])


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI)
    return path


def _legend(fig, axes) -> None:
    handles, labels, seen = [], [], set()
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in seen:
                seen.add(lab)
                handles.append(h)
                labels.append(lab)
    if handles:
        # Below the panels: room for many curves across the figure's width, clear of the title.
        ncols = max(1, min(len(handles), 2 * len(axes) if len(axes) < 3 else 6))
        fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=8, frameon=False)


class _Styler:
    """Colour by threshold (and source when several), line style by mode: the same curve looks the
    same in every figure of a report."""

    def __init__(self, summary: pd.DataFrame):
        curves = summary.loc[~summary["reference"], CURVE_KEYS].drop_duplicates()
        self.sources = list(dict.fromkeys(summary["source"]))
        self.modes = list(dict.fromkeys(curves["mode"]))
        keys = list(dict.fromkeys(zip(curves["source"], curves["threshold"])))
        cmap_name = "tab10" if len(keys) <= 10 else "tab20"
        cmap = _colormap(cmap_name)
        self.colors = {k: cmap(i % cmap.N) for i, k in enumerate(keys)}

    def __call__(self, source, mode, threshold) -> dict:
        label = f"t={threshold}"
        if len(self.modes) > 1:
            label += f" {mode}"
        if len(self.sources) > 1:
            label += f" [{source}]"
        return dict(color=self.colors.get((source, threshold), "black"),
                    linestyle=_STYLES[self.modes.index(mode) % len(_STYLES)] if mode in self.modes else "-",
                    label=label)


def _panels(summary: pd.DataFrame) -> list:
    return sorted(summary.loc[~summary["reference"], "labeled"].dropna().unique().tolist())


def _band(ax, x, mean, std, n, **style) -> None:
    ax.plot(x, mean, marker="o", markersize=3.5, **style)
    if np.nanmax(np.asarray(n, dtype=float), initial=0) > 1:
        low, high = mean - np.nan_to_num(std), mean + np.nan_to_num(std)
        ax.fill_between(x, low, high, color=style.get("color"), alpha=0.15, linewidth=0)


def _curves(summary: pd.DataFrame, labeled):
    rows = summary[(~summary["reference"]) & (summary["labeled"] == labeled)]
    for key, part in rows.groupby(["source", "mode", "threshold"], sort=False):
        yield key, part.sort_values("round")


def plot_by_round(summary: pd.DataFrame, metric: str, path, *, ylabel: str, title: str,
                  reference: bool = False, logy: bool = False, min_round: int = 0) -> Optional[Path]:
    """Mean of ``metric`` by round, one curve per threshold, one panel per labeled size.

    The band is mean ± one standard deviation over seeds (drawn where there are several).
    With ``reference=True`` the all-labels runs are a dashed grey line. Returns None (and writes
    nothing) when no run recorded the metric.

    Examples
    --------
    >>> from pseudolabel.report import load_history_frame, summarize_rounds
    >>> s = summarize_rounds(load_history_frame(["runs/st"]))  # doctest: +SKIP
    >>> plot_by_round(s, "test_accuracy", "acc.png", ylabel="test accuracy", title="Test accuracy")  # doctest: +SKIP
    """
    col = f"{metric}_mean"
    if col not in summary or summary[col].notna().sum() == 0:
        return None
    panels = _panels(summary)
    if not panels:
        return None
    style = _Styler(summary)
    fig, axes = _figure(len(panels))
    ref = summary[summary["reference"] & summary[col].notna()] if reference else summary.iloc[:0]
    for ax, labeled in zip(axes, panels):
        max_round = min_round
        for (source, mode, threshold), part in _curves(summary, labeled):
            part = part[(part["round"] >= min_round) & part[col].notna()]
            if part.empty:
                continue
            max_round = max(max_round, int(part["round"].max()))
            _band(ax, part["round"].to_numpy(), part[col].to_numpy(float), part[f"{metric}_std"].to_numpy(float),
                  part["n_runs"].to_numpy(), **style(source, mode, threshold))
        for i, (source, part) in enumerate(ref.groupby("source", sort=False)):
            mean, std = float(part[col].mean()), float(np.nan_to_num(part[f"{metric}_std"].mean()))
            label = "all labels" + (f" [{source}]" if len(style.sources) > 1 else "")
            ax.axhline(mean, color="0.35", linestyle=_STYLES[(i + 1) % len(_STYLES)], linewidth=1.2, label=label)
            if std > 0:
                ax.axhspan(mean - std, mean + std, color="0.5", alpha=0.12, linewidth=0)
        ax.set_title(f"{int(labeled)} labeled", fontsize=10)
        ax.set_xlabel("round")
        ax.set_ylabel(ylabel)
        ax.set_xticks(range(min_round, max_round + 1))
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    _legend(fig, axes)
    return _save(fig, path)


def plot_confidence_accuracy(summary: pd.DataFrame, path) -> Optional[Path]:
    """Accuracy of the predictions above the threshold (solid) and below it (dashed) by round.

    The below-threshold accuracy usually falls with the rounds: what is left in the pool is what
    the model could not decide earlier, the harder samples. It says nothing about test accuracy.
    """
    if "high_conf_accuracy_mean" not in summary or summary["high_conf_accuracy_mean"].notna().sum() == 0:
        return None
    panels = _panels(summary)
    if not panels:
        return None
    style = _Styler(summary)
    fig, axes = _figure(len(panels))
    for ax, labeled in zip(axes, panels):
        max_round = 1
        for (source, mode, threshold), part in _curves(summary, labeled):
            part = part[part["round"] >= 1]
            st = style(source, mode, threshold)
            for metric, linestyle, suffix in (("high_conf_accuracy", "-", "above threshold"),
                                              ("low_conf_accuracy", "--", "below threshold")):
                rows = part[part[f"{metric}_mean"].notna()]
                if rows.empty:
                    continue
                max_round = max(max_round, int(rows["round"].max()))
                _band(ax, rows["round"].to_numpy(), rows[f"{metric}_mean"].to_numpy(float),
                      rows[f"{metric}_std"].to_numpy(float), rows["n_runs"].to_numpy(),
                      color=st["color"], linestyle=linestyle, label=f"{st['label']} {suffix}")
        ax.set_title(f"{int(labeled)} labeled", fontsize=10)
        ax.set_xlabel("round")
        ax.set_ylabel("accuracy of the pool's predictions")
        ax.set_xticks(range(1, max_round + 1))
        ax.grid(alpha=0.3)
    fig.suptitle("Accuracy of the pool's predictions above (taken) and below (left) the threshold", fontsize=11)
    _legend(fig, axes)
    return _save(fig, path)


def plot_improvement(improvement: pd.DataFrame, path) -> Optional[Path]:
    """Test-accuracy gain over round 0 (the supervised fit) against threshold, one line per round.

    One panel per labeled size (and source and mode when there are several). Thresholds sit at
    evenly spaced positions in ascending order of their first value, so schedules fit on the axis.
    Panels with a single threshold are left out; returns None (and writes nothing) when none is left.
    """
    rows = improvement[(~improvement["reference"]) & (improvement["round"] >= 1)
                       & improvement["improvement_mean"].notna()]
    # A panel with a single threshold has no curve to read: the table says it better.
    if not rows.empty:
        n_thresholds = rows.groupby(["labeled", "source", "mode"])["threshold"].transform("nunique")
        rows = rows[n_thresholds >= 2]
    if rows.empty:
        return None
    panel_keys = list(dict.fromkeys(zip(rows["labeled"], rows["source"], rows["mode"])))
    panel_keys.sort(key=lambda k: (k[0], str(k[1]), str(k[2])))
    several_sources = rows["source"].nunique() > 1
    several_modes = rows["mode"].nunique() > 1
    rounds = sorted(rows["round"].unique())
    cmap = _colormap("viridis")
    colors = {r: cmap(0.9 * i / max(1, len(rounds) - 1)) for i, r in enumerate(rounds)}
    fig, axes = _figure(len(panel_keys))
    for ax, (labeled, source, mode) in zip(axes, panel_keys):
        part = rows[(rows["labeled"] == labeled) & (rows["source"] == source) & (rows["mode"] == mode)]
        order = (part[["threshold", "threshold_key"]].drop_duplicates()
                 .sort_values(["threshold_key", "threshold"])["threshold"].tolist())
        pos = {t: i for i, t in enumerate(order)}
        for r in rounds:
            line = part[part["round"] == r].copy()
            if line.empty:
                continue
            line["x"] = line["threshold"].map(pos)
            line = line.sort_values("x")
            x, mean = line["x"].to_numpy(float), line["improvement_mean"].to_numpy(float)
            ax.plot(x, mean, marker="o", markersize=4, color=colors[r], label=f"round {int(r)}")
            if line["n_runs"].max() > 1:
                ax.errorbar(x, mean, yerr=np.nan_to_num(line["improvement_std"].to_numpy(float)), fmt="none",
                            ecolor=colors[r], alpha=0.5, capsize=3)
        ax.axhline(0, color="0.5", linewidth=0.8)
        ax.set_xticks(range(len(order)))
        ax.set_xlim(-0.5, len(order) - 0.5)
        ax.set_xticklabels(order, rotation=30 if len(order) > 4 else 0, fontsize=8)
        title = f"{int(labeled)} labeled"
        if several_modes:
            title += f", {mode}"
        if several_sources:
            title += f" [{source}]"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("threshold")
        ax.set_ylabel("test accuracy - round 0")
        ax.grid(alpha=0.3)
    fig.suptitle("Improvement over the supervised round 0, by threshold", fontsize=11)
    _legend(fig, axes)
    return _save(fig, path)


def plot_precision_recall_at_k(curves: Mapping[str, pd.DataFrame], path,
                               flagged: Optional[Mapping[str, int]] = None) -> Optional[Path]:
    """Precision and recall of the top-k suspects against k, one curve per run.

    ``curves`` maps a run name to :func:`pseudolabel.report.precision_recall_at_k` output; the
    dotted vertical line marks how many samples the run flagged.
    """
    curves = {k: v for k, v in curves.items() if v is not None and not v.empty}
    if not curves:
        return None
    fig, axes = _figure(2, panel_size=(4.8, 3.4), ncols=2)
    cmap = _colormap("tab10")
    for i, (name, frame) in enumerate(curves.items()):
        color = cmap(i % 10)
        label = name if len(curves) > 1 else None
        for ax, metric in zip(axes, ("precision", "recall")):
            ax.plot(frame["k"], frame[metric], color=color, label=label)
            if flagged and flagged.get(name):
                ax.axvline(flagged[name], color=color, linestyle=":", linewidth=1)
    for ax, metric in zip(axes, ("precision", "recall")):
        ax.set_xlabel("k (most suspicious samples checked)")
        ax.set_ylabel(f"{metric} at k")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{metric.capitalize()} at k", fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle("Finding the injected label noise (dotted: number flagged)", fontsize=11)
    _legend(fig, axes)
    return _save(fig, path)


def plot_confusion(matrix: pd.DataFrame, path, *, title: str = "Given against suggested labels") -> Optional[Path]:
    """A count matrix as a heat map with the counts written in the cells (rows: given labels)."""
    if matrix is None or matrix.size == 0 or matrix.to_numpy().sum() == 0:
        return None
    values = matrix.to_numpy()
    side = max(3.6, 0.42 * max(values.shape) + 1.6)
    fig, (ax,) = _figure(1, panel_size=(side, side - 0.4))
    image = ax.imshow(values, cmap="Blues", aspect="equal")
    top = values.max()
    for (i, j), v in np.ndenumerate(values):
        if v:
            ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=8,
                    color="white" if v > 0.6 * top else "black")
    ax.set_xticks(range(values.shape[1]), [str(c) for c in matrix.columns], fontsize=8)
    ax.set_yticks(range(values.shape[0]), [str(r) for r in matrix.index], fontsize=8)
    ax.set_xlabel("suggested label")
    ax.set_ylabel("given label")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _save(fig, path)
