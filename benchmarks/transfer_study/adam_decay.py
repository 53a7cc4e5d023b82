"""The decay that coupled L2 amounts to under Adam, and its table."""

import numpy as np
from keras import ops


def coupled_decay_rate(optimizer, kernels, pulls):
    """The AdamW `weight_decay` that shrinks `kernels` as coupled L2 does.

    Coupled L2 adds `pull * W` to a kernel's gradient (`pull = 2 c` for the
    penalty `c * sum(W**2)`). Keras's `Adam` steps by

        lr * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) + epsilon)

    so, with the running mean of `pull * W` taken as `pull * W`, the
    penalty moves each weight by `lr * pull * W / d`, where
    `d = (sqrt(v) + epsilon) / sqrt(1 - beta_2**t)`. Keras's `AdamW` moves
    it by `lr * weight_decay * W`. Returned, at the optimizer's current
    step: the one rate that shrinks the kernels' summed squared norm as
    fast,

        sum(W**2 * pull / d) / sum(W**2)    (over every kernel).

    Args:
        optimizer: A built `keras.optimizers.Adam` (not `amsgrad`).
        kernels: The kernel variables, each trained by `optimizer`.
        pulls: Per kernel, `2 c`.
    """
    step = float(ops.convert_to_numpy(optimizer.iterations))
    correction = np.sqrt(1 - optimizer.beta_2**step)
    shrink = norm = 0.0
    for kernel, pull in zip(kernels, pulls, strict=True):
        # Adam's second moment of this kernel (a private attribute of
        # Keras's Adam, read as its `update_step` reads it).
        velocity = optimizer._velocities[optimizer._get_variable_index(kernel)]
        divisor = (
            np.sqrt(ops.convert_to_numpy(velocity).astype(np.float64))
            + optimizer.epsilon
        ) / correction
        squares = ops.convert_to_numpy(kernel).astype(np.float64) ** 2
        shrink += float(np.sum(squares * pull / divisor))
        norm += float(np.sum(squares))
    return shrink / norm


def equivalent_decay_table(rows, adamw_width):
    """Per tabular data set: the decay coupled `none/kernels` amounts to
    per width (median over the seeds, with their range), beside AdamW's
    best decay with the decay on the kernels only and on every variable.

    `rows`: the AdamW rows of `results/gradient_ratio.json`;
    `adamw_width`: the summary of `results/adamw_width.json`. The drift of
    the coupled decay is its largest median over its smallest.
    """
    widths = [row["width"] for row in rows if row["data"] == rows[0]["data"]]
    lines = [
        "| data | decay | "
        + " | ".join(f"width {w}" for w in widths)
        + " | drift |",
        "|---|---|" + "---:|" * (len(widths) + 1),
    ]
    for setup in adamw_width["setups"]:
        data = setup["data"]
        per_width = [row for row in rows if row["data"] == data]
        if [row["width"] for row in per_width] != setup["widths"]:
            raise ValueError(
                f"{data}: the decay rows have widths "
                f"{[row['width'] for row in per_width]}, the AdamW width run "
                f"{setup['widths']}"
            )
        medians = [float(np.median(r["equivalent_decay"])) for r in per_width]
        cells = [
            f"{median:.3g} ({min(r['equivalent_decay']):.3g}-"
            f"{max(r['equivalent_decay']):.3g})"
            for median, r in zip(medians, per_width, strict=True)
        ]
        drift = max(medians) / min(medians)
        lines.append(
            f"| {data} | coupled, as a decay | {' | '.join(cells)} "
            f"| {drift:.2g}x |"
        )
        for which in ("kernels only", "every variable"):
            entry = setup[which]
            bests = " | ".join(f"{b:.3g}" for b in entry["best_factors"])
            lines.append(
                f"| {data} | AdamW's best, {which} | {bests} "
                f"| {entry['drift']:.3g}x |"
            )
    return "\n".join(lines)
