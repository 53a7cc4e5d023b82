"""The README tables and the plot of a summary."""

import numpy as np

from transfer_study.settings import AXES


def format_tables(summary):
    """The README tables: drift, cost of reuse, collapse, depth of minima."""
    coupled = [s for s in summary["setups"] if s["optimizer"] != "adamw"]
    decoupled = [s for s in summary["setups"] if s["optimizer"] == "adamw"]
    return "\n\n".join(
        [
            _axis_table(coupled, _drift),
            _axis_table(decoupled, _drift),
            headline_table(summary),
            _axis_table(summary["setups"], _reuse, variants_per_setup=True),
            _collapse_table(summary["setups"]),
            _minimum_table(summary["setups"]),
        ]
    )


def _axis_table(setups, cell, variants_per_setup=False):
    """Rows: setup and axis; columns: variants."""
    if variants_per_setup:
        header = ["setup: axis", "per variant"]
    else:
        header = ["setup: axis"] + [
            f"`{row['variant']}`" for row in setups[0]["scales"]
        ]
    rows = []
    for setup in setups:
        for axis in AXES:
            cells = [
                cell(row[axis]) if axis in row else "-"
                for row in setup["scales"]
            ]
            if variants_per_setup:
                cells = [
                    ", ".join(
                        f"`{row['variant']}` {c}"
                        for row, c in zip(setup["scales"], cells, strict=True)
                        if c != "-"
                    )
                ]
            rows.append([f"{_setup_name(setup)}: {axis}", *cells])
    return _table(header, rows)


def headline_table(summary):
    """Per variant: worst drift, its interval's upper end, cost of reuse."""
    recommended = summary["recommended"]["variant"]
    rows = [
        [
            f"`{name}`" + (" (recommended)" if name == recommended else ""),
            f"{summary['worst_drift'][name]:.2f}x",
            f"{summary['worst_drift_upper'][name]:.2f}x",
            f"{summary['worst_reused_loss_increase'][name]:+.1%}",
        ]
        for name in summary["worst_drift"]
    ]
    return _table(
        [
            "variant",
            "worst drift",
            "its 95 % upper end",
            "worst cost of reuse",
        ],
        rows,
    )


def _collapse_table(setups):
    depths = list(setups[0]["collapse_at_default_by_depth"])
    rows = []
    for setup in setups:
        by_depth = setup["collapse_at_default_by_depth"]
        for name in by_depth[depths[0]]:
            rows.append(
                [
                    f"{_setup_name(setup)}: `{name}`",
                    *(f"{by_depth[d][name]:.0%}" for d in depths),
                ]
            )
    return _table(
        ["collapsed at the default factor"] + [f"depth {d}" for d in depths],
        rows,
    )


def _minimum_table(setups):
    rows = []
    for setup in setups:
        entries = [
            row[axis] for row in setup["scales"] for axis in AXES if axis in row
        ]
        losses = [x for e in entries for x in e["best_test_data_loss"]]
        depths = [x for e in entries for x in e["depth_of_minimum"]]
        rows.append(
            [
                _setup_name(setup),
                f"{min(losses):.4f} to {max(losses):.4f}",
                f"{min(depths):.1%}",
            ]
        )
    return _table(
        ["setup", "best mean test loss", "grid ends above it, at least"], rows
    )


def _setup_name(setup):
    return f"{setup['data']}, {setup['optimizer']}"


def _table(header, rows):
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _drift(entry):
    mark = "+" if any(entry["at_edge"]) else ""
    low, high = entry["drift_interval"]
    return f"{entry['drift']:.2f}x{mark} ({low:.2f}-{high:.2f})"


def _reuse(entry):
    return f"{entry['reused_loss_increase']:+.1%}"


def plot(summary, settings, path):
    """Best factor of every configuration, relative to the reference's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setups = summary["setups"]
    reference = settings.widths.index(settings.reference[0])
    columns = 3
    figure, panels = plt.subplots(
        len(setups) // columns,
        columns,
        figsize=(5 * columns, 4.2 * (len(setups) // columns)),
        sharey=True,
        squeeze=False,
    )
    for axes, setup in zip(panels.flat, setups, strict=True):
        plain = [row for row in setup["scales"] if "width" in row]
        for color, row in enumerate(plain):
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
        axes.axhspan(
            1 / np.sqrt(2), np.sqrt(2), color="0.85", zorder=0
        )  # a 2x band around the reference
        axes.set_xticks(ticks, labels, rotation=45, ha="right")
        axes.set_yscale("log")
        axes.set_title(_setup_name(setup))
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    for axes in panels[:, 0]:
        axes.set_ylabel("best factor / the reference model's")
    figure.suptitle(
        "Best factor per configuration (open marker: at a grid end; "
        "grey: a 2x band)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)


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
