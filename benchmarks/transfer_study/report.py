"""The README tables and the plot of a summary."""

import numpy as np

from transfer_study.settings import AXES, PLAIN_SCALES


def format_tables(summary):
    """The README tables: drift, cost of reuse, collapse at the default."""
    setups = summary["setups"]
    names = [f"{s['data']}, {s['optimizer']}" for s in setups]
    variants = [row["variant"] for row in setups[0]["scales"]]

    def by_axis(index, cell):
        rows = [setup["scales"][index] for setup in setups]
        return [
            " / ".join(cell(row[axis]) if axis in row else "-" for axis in AXES)
            for row in rows
        ]

    def axis_table(cell, last_name, last_cell):
        return _table(
            ["scale"]
            + [f"{name}: width / depth / data" for name in names]
            + [last_name],
            [
                [f"`{v}`", *by_axis(i, cell), last_cell(v)]
                for i, v in enumerate(variants)
            ],
        )

    overall = summary["overall_drift"]
    worst = summary["worst_reused_metric_change"]
    drift = axis_table(_drift, "geometric mean", lambda v: f"{overall[v]:.1f}x")
    reuse = axis_table(_reuse, "worst", lambda v: f"{worst[v]:+.3f}")
    depths = list(setups[0]["collapse_at_default_by_depth"])
    collapse = _table(
        ["factor 0.01 with scale"]
        + [f"{name}: depth {' / '.join(depths)}" for name in names],
        [
            [_default_name(scale)]
            + [
                " / ".join(
                    f"{s['collapse_at_default_by_depth'][d][scale]:.0%}"
                    for d in depths
                )
                for s in setups
            ]
            for scale in PLAIN_SCALES
        ],
    )
    return "\n\n".join([drift, reuse, collapse])


def _table(header, rows):
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _drift(entry):
    mark = "+" if any(entry["at_edge"]) else ""
    return f"{entry['drift']:.1f}x{mark}"


def _reuse(entry):
    return f"{entry['reused_metric_change']:+.3f}"


def _default_name(scale):
    if scale == "none":
        return "`none` (= keras `L2(0.01)`)"
    return f"`{scale}`"


def plot(summary, settings, path):
    """Best factor of every configuration, relative to the reference's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setups = summary["setups"]
    reference = settings.widths.index(settings.reference[0])
    figure, panels = plt.subplots(
        1, len(setups), figsize=(5 * len(setups), 4.2), sharey=True
    )
    for axes, setup in zip(panels, setups, strict=True):
        for color, row in enumerate(setup["scales"][: len(PLAIN_SCALES)]):
            reference_factor = row["width"]["best_factors"][reference]
            ticks, labels = [], []
            position = 0
            for axis, axis_labels in _axis_labels(settings, setup["data"]):
                factors = np.array(row[axis]["best_factors"]) / reference_factor
                places = np.arange(position, position + len(factors))
                axes.plot(
                    places,
                    factors,
                    marker="o",
                    color=f"C{color}",
                    label=row["variant"] if axis == "width" else None,
                )
                edges = np.array(row[axis]["at_edge"])
                axes.plot(
                    places[edges],
                    factors[edges],
                    "o",
                    color=f"C{color}",
                    markerfacecolor="white",
                )
                ticks += list(places)
                labels += axis_labels
                position += len(factors) + 1  # a gap between the axes
        axes.set_xticks(ticks, labels, rotation=45, ha="right")
        axes.set_yscale("log")
        axes.set_title(f"{setup['data']}, {setup['optimizer']}")
        axes.grid(alpha=0.3)
    panels[0].set_ylabel(
        "best factor / the reference model's (open: at a grid end)"
    )
    panels[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _axis_labels(settings, data):
    """Per axis, in `AXES` order, the tick label of each configuration."""
    small, large = sorted(settings.num_train[data])
    return zip(
        AXES,
        [
            [f"width {w}" for w in settings.widths],
            [f"depth {d}" for d in settings.depths],
            [f"{small} rows", f"{large} rows"],
        ],
        strict=True,
    )
