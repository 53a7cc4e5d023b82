"""The README tables and the plot of a summary."""

import math

import numpy as np

from transfer_study.curves import TARGET_DRIFT
from transfer_study.settings import AXES, Setup

DECOUPLED_RULE = "adamw"
"""The rule of the AdamW setups in `miss_table`: Keras's own decay. The
package ships no decoupled rule, and across depth `adamw` drifts less than
`adamw/kernels`."""
MECHANISMS = {
    ("data size", False): "the rows, up to the collapse cliff",
    ("data size", True): "the rows, faster than lambda/(2m)",
    ("depth", False): "the summed pull across depth",
    ("width", True): "AdamW: its decay skips Adam's division, in part",
}
"""Per (axis, decoupled), the measurement that accounts for a cell over 2x
whose plateaus do not overlap (the scales page, "Every cell over 2x")."""
FLAT = "flat optimum: the plateaus overlap"
UPPER_END = "largest 95 % upper end"
"""The column of `worst_drift_upper`: the largest upper end of the 95 %
intervals over every axis, not the upper end of the worst drift's own
interval (the two often come from different axes)."""
TIE_RTOL = 1e-9
"""Worst drifts this close are a tie, not a ranking: `none` and
`none/kernels` train the same networks across width, and their drifts
there differ in the last bits only."""


def format_tables(summary):
    """The README tables: drift, cost of reuse, collapse, depth of minima."""
    coupled = [s for s in summary["setups"] if s["optimizer"] != "adamw"]
    decoupled = [s for s in summary["setups"] if s["optimizer"] == "adamw"]
    tables = [
        _axis_table(coupled, format_drift),
        _axis_table(decoupled, format_drift),
        headline_table(summary),
        _axis_table(summary["setups"], format_plateau_gap),
        plateau_table(summary),
        miss_table(summary),
        _axis_table(summary["setups"], _reuse, variants_per_setup=True),
        _collapse_table(summary["setups"]),
        _minimum_table(summary["setups"]),
    ]
    candidates = [s for s in summary["setups"] if s["candidates"]]
    if candidates:
        tables.append(
            _axis_table(candidates, format_drift, rows_key="candidates")
        )
        tables.append(candidate_table(summary["candidates"]))
    if summary["baselines"]:
        tables.append(baseline_table(summary["baselines"]))
        tables.append(gain_table(summary["setups"]))
    if summary["across_families"]:
        tables.append(across_families_table(summary["across_families"]))
    return "\n\n".join(tables)


def candidate_table(candidates):
    """Per candidate rule: worst drift, and how many axes stay within 2x."""
    rows = [
        [
            f"`{entry['rule']}`",
            f"{entry['worst_drift']:.2f}x",
            _times(entry["worst_drift_upper"]),
            f"{entry['within_2x']} of {entry['comparisons']}",
        ]
        for entry in candidates
    ]
    return _table(
        ["candidate rule", "worst drift", UPPER_END, "within 2x"],
        rows,
    )


def gain_table(setups):
    """Per MNIST-1D setup and variant: the best loss against no penalty."""
    rows = []
    for setup in setups:
        gains = setup["gain_over_unpenalized"]
        if gains is None:
            continue
        cells = [
            f"`{name}` {min(changes):+.1%} to {max(changes):+.1%}"
            for name, changes in gains["change"].items()
        ]
        rows.append([_setup_name(setup), ", ".join(cells)])
    return _table(
        [
            "setup",
            "best mean test loss against no penalty, over the configurations",
        ],
        rows,
    )


def baseline_table(baselines):
    """Unpenalized test accuracy of each reference model on MNIST-1D."""
    rows = []
    for entry in baselines:
        published = entry["published_accuracy"]
        anchored = entry["within_anchor"]
        rows.append(
            [
                f"{entry['family']}, {entry['optimizer']}",
                f"{entry['width']} x {entry['depth']}",
                str(entry["seeds"]),
                f"{entry['test_accuracy']:.1%} "
                + _interval(entry["test_accuracy_interval"], "{:.1%}"),
                "-" if published is None else f"{published:.0%}",
                "-" if anchored is None else ("yes" if anchored else "no"),
            ]
        )
    return _table(
        [
            "MNIST-1D, unpenalized",
            "width x depth",
            "seeds",
            "test accuracy (95 %)",
            "published",
            "within 3 points",
        ],
        rows,
    )


def across_families_table(entries):
    """Per optimizer and variant: each family's best factor, and drift."""
    families = list(dict.fromkeys(f for e in entries for f in e["families"]))
    rows = []
    for entry in entries:
        found = {
            family: f"{factor:.3g}" + ("+" if edge else "")
            for family, factor, edge in zip(
                entry["families"],
                entry["best_factors"],
                entry["at_edge"],
                strict=True,
            )
        }
        rows.append(
            [
                f"{entry['optimizer']}: `{entry['variant']}`",
                *(found.get(family, "-") for family in families),
                f"{entry['drift']:.2f}x "
                + _interval(entry["drift_interval"], "{:.2f}"),
            ]
        )
    return _table(
        ["MNIST-1D: best factor", *families, "drift across families"], rows
    )


def _axis_table(setups, cell, variants_per_setup=False, rows_key="scales"):
    """Rows: setup and axis; columns: variants."""
    names = list(
        dict.fromkeys(row["variant"] for s in setups for row in s[rows_key])
    )
    if variants_per_setup:
        header = ["setup: axis", "per variant"]
    else:
        header = ["setup: axis"] + [f"`{name}`" for name in names]
    rows = []
    for setup in setups:
        by_name = {row["variant"]: row for row in setup[rows_key]}
        for axis in AXES:
            cells = [
                cell(by_name[name][axis])
                if name in by_name and axis in by_name[name]
                else "-"
                for name in names
            ]
            if variants_per_setup:
                cells = [
                    ", ".join(
                        f"`{name}` {c}"
                        for name, c in zip(names, cells, strict=True)
                        if c != "-"
                    )
                ]
            rows.append([f"{_setup_name(setup)}: {axis}", *cells])
    return _table(header, rows)


def headline_table(summary):
    """Per variant: worst drift, the largest upper interval end, cost of
    reuse. The recommended variant is marked unless another one's worst
    drift ties with it (`TIE_RTOL`): rounding does not recommend."""
    recommended = summary["recommended"]["variant"]
    worst = summary["worst_drift"]
    if any(
        name != recommended
        and math.isclose(value, worst[recommended], rel_tol=TIE_RTOL)
        for name, value in worst.items()
    ):
        recommended = None
    rows = [
        [
            f"`{name}`" + (" (recommended)" if name == recommended else ""),
            f"{summary['worst_drift'][name]:.2f}x",
            _times(summary["worst_drift_upper"].get(name)),
            f"{summary['worst_reused_loss_increase'][name]:+.1%}",
        ]
        for name in summary["worst_drift"]
    ]
    return _table(
        [
            "variant",
            "worst drift",
            UPPER_END,
            "worst cost of reuse",
        ],
        rows,
    )


def plateau_table(summary):
    """Per variant: the worst plateau gap, and the cells a factor carries."""
    complete = [s for s in summary["setups"] if s["complete"]]
    rows = []
    for name, worst in summary["worst_plateau_gap"].items():
        gaps = [
            row[axis]["plateau_gap"]
            for setup in complete
            for row in setup["scales"]
            if row["variant"] == name
            for axis in AXES
            if axis in row
        ]
        carried = sum(gap == 1.0 for gap in gaps)
        rows.append([f"`{name}`", f"{carried} of {len(gaps)}", f"{worst:.1f}x"])
    return _table(
        ["variant", "axes a factor carries (plateaus overlap)", "worst gap"],
        rows,
    )


def miss_table(summary):
    """Every axis over 2x, or with a best factor at a grid end (its drift
    is then a bound), for the recommended rule (AdamW: `DECOUPLED_RULE`) in
    the complete setups, and what accounts for it: a flat optimum, when one
    factor lies in every configuration's plateau, else the measurement of
    `MECHANISMS` (or `not measured`)."""
    recommended = summary["recommended"]["variant"]
    rows = []
    for setup in summary["setups"]:
        if not setup["complete"]:
            continue
        decoupled = setup["optimizer"] == "adamw"
        name = DECOUPLED_RULE if decoupled else recommended
        (row,) = [r for r in setup["scales"] if r["variant"] == name]
        for axis in AXES:
            entry = row[axis]
            if entry["drift"] <= TARGET_DRIFT and not any(entry["at_edge"]):
                continue
            if entry["plateau_gap"] == 1.0:
                why = FLAT
            else:
                why = MECHANISMS.get((axis, decoupled), "not measured")
            rows.append(
                [
                    f"{_setup_name(setup)}: {axis}",
                    f"`{name}`",
                    why,
                    format_drift(entry),
                    format_plateau_gap(entry),
                ]
            )
    return _table(
        ["setup: axis", "rule", "why", "drift", "plateau gap"],
        rows,
        text_columns=3,
    )


def format_plateau_gap(entry):
    """`1x`: one factor in every plateau of the axis; else their gap."""
    return f"{entry['plateau_gap']:.1f}x"


def _collapse_table(setups):
    rows = []
    for setup in setups:
        by_depth = setup["collapse_at_default_by_depth"]
        depths = list(by_depth)
        for name in by_depth[depths[0]]:
            rows.append(
                [
                    f"{_setup_name(setup)}: `{name}`",
                    ", ".join(
                        f"{by_depth[d][name]:.0%} (depth {d})" for d in depths
                    ),
                ]
            )
    return _table(["collapsed at the default factor", "per depth"], rows)


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
    """`"cnn on mnist1d, sgd"`, and `[1 seed]` while it is incomplete."""
    name = f"{setup['family']} on {setup['data']}, {setup['optimizer']}"
    if setup["complete"]:
        return name
    count = len(setup["seeds"])
    return f"{name} [{count} seed{'s' if count > 1 else ''}]"


def _times(value):
    return "-" if value is None else f"{value:.2f}x"


def _interval(interval, form):
    """`(low-high)`, or `(1 seed)` when there is nothing to resample."""
    if interval is None:
        return "(1 seed)"
    low, high = interval
    return f"({form.format(low)}-{form.format(high)})"


def _table(header, rows, text_columns=1):
    """A Markdown table: the first `text_columns` left, numbers right."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|"
        + "|".join(
            ["---"] * text_columns + ["---:"] * (len(header) - text_columns)
        )
        + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_drift(entry):
    mark = "+" if any(entry["at_edge"]) else ""
    interval = _interval(entry["drift_interval"], "{:.2f}")
    return f"{entry['drift']:.2f}x{mark} {interval}"


def _reuse(entry):
    """The cost of reuse; `~`: interpolated between grid points."""
    if entry["reused_loss_increase"] is None:
        return "off the grid"
    mark = "" if entry["reused_on_grid"] else "~"
    return f"{mark}{entry['reused_loss_increase']:+.1%}"


def plot(summary, settings, family, path):
    """Best factor of every configuration of `family`, per setup, relative
    to the reference model's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setups = [s for s in summary["setups"] if s["family"] == family]
    if not setups:
        return False
    # Two panels a row, in type that stays legible when the figure is shown
    # at a page's width (about 800 px): about 11 px a letter.
    columns = min(2, len(setups))
    rows = -(-len(setups) // columns)
    plt.rcParams.update({"font.size": 13, "legend.fontsize": 11})
    figure, panels = plt.subplots(
        rows,
        columns,
        figsize=(5.5 * columns, 4.6 * rows),
        sharey=True,
        squeeze=False,
    )
    for axes, setup in zip(panels.flat, setups, strict=False):
        shapes = settings.shapes_of(Setup(*(setup[f] for f in Setup._fields)))
        reference = shapes.widths.index(shapes.reference[0])
        plain = [row for row in setup["scales"] if "width" in row]
        for color, row in enumerate(plain):
            reference_factor = row["width"]["best_factors"][reference]
            ticks, labels = [], []
            position = 0
            for axis, axis_labels in _axis_labels(
                shapes, settings.num_train[setup["data"]]
            ):
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
        axes.legend()
    for axes in list(panels.flat)[len(setups) :]:
        axes.set_visible(False)
    for axes in panels[:, 0]:
        axes.set_ylabel("best factor / the reference model's")
    figure.suptitle(
        f"{family}: best factor per configuration\n(open marker: at a grid "
        "end; grey: a 2x band)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def _axis_labels(shapes, num_train):
    """Per axis, in `AXES` order, the tick label of each configuration."""
    small, large = sorted(num_train)
    return zip(
        AXES,
        [
            [f"width {w}" for w in shapes.widths],
            [f"depth {d}" for d in shapes.depths],
            [f"{small} rows", f"{large} rows"],
        ],
        strict=True,
    )
