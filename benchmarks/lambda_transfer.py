"""Does one penalty factor transfer across width, depth and data size?

For every scale, sweeps the factor over a log grid on ReLU MLPs of widths
64, 256 and 1024 (depth 4) and depths 2, 4 and 8 (width 256), on two data
sets (the package's synthetic low-signal tabular data, and scikit-learn's
bundled digits), with Adam, and with SGD + momentum on the synthetic data;
then trains the reference model on a training set 4x smaller, with and
without `num_examples`. For each scale it reports the best factor
of every configuration and the *drift*: the ratio of the largest to the
smallest best factor across widths, depths and data sizes. A scale under
which one factor transfers has a drift near 1.

The best factor is the one with the lowest test data loss (mean over the
seeds), refined between grid points by a parabola in log10(factor). The
synthetic data is generated with `signal=0.5`: at the default 0.15 and 2000
training rows, no network beat the constant prediction's test loss by more
than 1 %, which leaves no optimum to locate.

Runs sharing a data set, optimizer, architecture, training-set size and
seed (which sets the initial weights and the batch order) are trained
together, as independent members of one Keras model: the loss is the sum of
the members' losses, so each member gets exactly its own gradient and
(Adam and SGD being elementwise) its own update, as if trained alone;
`tests/test_lambda_transfer.py` checks this. All members of a group start
from the same initial weights, so factors are compared on equal terms.

    KERAS_BACKEND=jax python benchmarks/lambda_transfer.py       # full run
    python benchmarks/lambda_transfer.py --quick --output DIR    # smoke run

The full run trains 3294 networks in 54 groups; epochs and data sizes are
chosen so that it takes 79 minutes on 2 CPU cores with JAX (TensorFlow is
slower here). Each record holds the group's fit time (`group_seconds`) and
size (`group_size`): members share one architecture, so each costs an
equal share.

The full run writes `benchmarks/results/lambda_transfer.json` (one record
per run, then the summary) and `lambda_transfer.png`; it resumes from the
records already in the JSON file when interrupted. `--table` prints the
README tables of an existing results file.
"""

import argparse
import dataclasses
import json
import math
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from keras import ops

from keras_scaled_l2 import ScaledL2
from keras_scaled_l2.datasets import make_low_signal_tabular, rank_correlation
from keras_scaled_l2.scales import SCALES

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
PLAIN_SCALES = tuple(SCALES)
DEFAULT_FACTOR = 0.01  # ScaledL2's default, and keras's own `L2(0.01)`
COLLAPSE_RATIO = 1e-3  # prediction std below this share of the target's
AXES = ("width", "depth", "data size")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one study; `FULL` is the published one."""

    widths: tuple  # at depth `reference[1]`
    depths: tuple  # at width `reference[0]`
    reference: tuple  # (width, depth) of the data-size comparison
    seeds: tuple
    epochs: dict  # per data set
    num_train: dict  # per data set: (sweep size, the other size)
    num_test: int  # synthetic test rows
    signal: float  # of the synthetic data
    batch_size: int
    half_decades: int  # grid points on each side of a scale's center
    center: dict  # per data set, the grid center of `none`; see factor_grid


FULL = Settings(
    widths=(64, 256, 1024),
    depths=(2, 4, 8),
    reference=(256, 4),
    seeds=(0, 1, 2),
    epochs={"synthetic": 10, "digits": 12},
    num_train={"synthetic": (2000, 500), "digits": (1347, 337)},
    num_test=4000,
    signal=0.5,
    batch_size=64,
    half_decades=4,
    center={"synthetic": 1e-3, "digits": 10**-3.5},
)
QUICK = Settings(
    widths=(8, 16, 32),
    depths=(1, 2, 3),
    reference=(16, 2),
    seeds=(0,),
    epochs={"synthetic": 1, "digits": 1},
    num_train={"synthetic": (256, 64), "digits": (256, 64)},
    num_test=256,
    signal=0.5,
    batch_size=64,
    half_decades=1,
    center={"synthetic": 1e-3, "digits": 1e-3},
)
SETUPS = (("synthetic", "adam"), ("synthetic", "sgd"), ("digits", "adam"))


# ----------------------------------------------------------------- data


def load_data(name, num_train, settings):
    """Returns `(x_train, y_train), (x_test, y_test)`; `y` one-hot if digits.

    The test set does not depend on `num_train`: a smaller training set is
    the first rows of the larger one.
    """
    if name == "synthetic":
        largest = max(settings.num_train["synthetic"])
        (x, y), test = make_low_signal_tabular(
            largest,
            settings.num_test,
            num_features=64,
            signal=settings.signal,
            seed=0,
        )
        return (x[:num_train], y[:num_train]), test
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = np.eye(10, dtype="float32")[digits.target]
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1347], order[1347:]
    return (x[train[:num_train]], y[train[:num_train]]), (x[test], y[test])


# ------------------------------------------------------------- variants


def variant_name(scale, num_examples):
    return f"{scale}+num_examples" if num_examples else scale


def factor_grid(scale, num_examples, data, settings):
    """Half-decade grid around the factor that matches `none` at center.

    The center gives the reference model's hidden kernels the penalty that
    `none` gives them at `settings.center[data]`; `half_decades` points on
    each side, plus the default 0.01 for the plain scales. The grid does
    not depend on the model or the data size, so a factor chosen on one
    configuration can be looked up on every other.
    """
    width = settings.reference[0]
    multiplier = SCALES[scale](width, width, width * width)
    if num_examples:
        multiplier /= 2 * settings.num_train[data][0]
    middle = round(2 * math.log10(settings.center[data] / multiplier))
    steps = range(
        middle - settings.half_decades, middle + settings.half_decades + 1
    )
    grid = {float(f"{10 ** (k / 2):.6g}") for k in steps}
    if not num_examples:
        grid.add(DEFAULT_FACTOR)
    return sorted(grid)


# ---------------------------------------------------------------- model


def group_mse(y_true, y_pred):
    """Per example, the sum over members of the squared error."""
    y = ops.reshape(ops.cast(y_true, y_pred.dtype), (-1, 1))
    return ops.sum(ops.square(y_pred - y), axis=-1)


def group_crossentropy(y_true, y_pred):
    """Per example, the sum over members of the softmax cross-entropy."""
    log_probabilities = ops.log_softmax(y_pred, axis=-1)
    y = ops.expand_dims(ops.cast(y_true, y_pred.dtype), 1)
    return -ops.sum(y * log_probabilities, axis=(1, 2))


def build_group(members, num_features, num_outputs, width, depth, seed):
    """One Keras model of independent MLPs, one per regularizer in `members`.

    Every member gets the same initial weights (Glorot uniform seeded by
    `seed` and the layer's position). Output shape: `(batch, members)`
    for one output, else `(batch, members, num_outputs)`.
    """
    inputs = keras.Input((num_features,))
    outputs = []
    for index, regularizer in enumerate(members):
        hidden = inputs
        for position in range(depth + 1):
            last = position == depth
            hidden = keras.layers.Dense(
                num_outputs if last else width,
                activation=None if last else "relu",
                kernel_initializer=keras.initializers.GlorotUniform(
                    seed=1000 * seed + position
                ),
                kernel_regularizer=regularizer,
                name=f"member{index}_dense{position}",
            )(hidden)
        outputs.append(hidden)
    if num_outputs == 1:
        output = keras.layers.Concatenate()(outputs)
    else:
        output = keras.layers.Concatenate(axis=1)(
            [keras.layers.Reshape((1, num_outputs))(o) for o in outputs]
        )
    return keras.Model(inputs, output)


def make_optimizer(name):
    if name == "adam":
        return keras.optimizers.Adam(1e-3)
    return keras.optimizers.SGD(1e-2, momentum=0.9)


def member_penalties(model, count):
    """The penalty of each member's kernels, as Keras computes it."""
    penalties = np.zeros(count)
    for layer in model.layers:
        if layer.name.startswith("member"):
            index = int(layer.name[len("member") :].split("_")[0])
            penalties[index] += sum(
                float(ops.convert_to_numpy(loss)) for loss in layer.losses
            )
    return penalties


def data_losses(y, predictions):
    """Per member, the float64 mean data loss of `predictions`."""
    predictions = predictions.astype(np.float64)
    if predictions.ndim == 2:
        return np.mean((predictions - y[:, None]) ** 2, axis=0)
    shifted = predictions - predictions.max(axis=-1, keepdims=True)
    log_probabilities = shifted - np.log(
        np.exp(shifted).sum(axis=-1, keepdims=True)
    )
    return -np.mean(np.sum(y[:, None, :] * log_probabilities, axis=-1), axis=0)


def test_metrics(y, predictions):
    """Per member, rank correlation (one output) or accuracy."""
    if predictions.ndim == 2:
        return [
            rank_correlation(y, predictions[:, i])
            for i in range(predictions.shape[1])
        ]
    hits = predictions.argmax(axis=-1) == y.argmax(axis=-1)[:, None]
    return list(hits.mean(axis=0))


def prediction_spread(y, predictions):
    """Per member, the prediction std over examples relative to y's."""
    spread = predictions.astype(np.float64).std(axis=0)
    if spread.ndim == 2:
        spread = spread.mean(axis=-1)
    return spread / float(np.std(y.astype(np.float64), axis=0).mean())


def train_group(group, settings):
    """Trains one group; returns one record per member."""
    data, optimizer, width, depth, num_train, seed = group
    (x, y), (x_test, y_test) = load_data(data, num_train, settings)
    members = [
        (scale, num_examples, factor)
        for scale, num_examples in variants_of(group, settings)
        for factor in factor_grid(scale, num_examples, data, settings)
    ]
    regularizers = [
        ScaledL2(
            factor, scale, num_examples=num_train if num_examples else None
        )
        for scale, num_examples, factor in members
    ]
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    num_outputs = 1 if y.ndim == 1 else y.shape[1]
    model = build_group(
        regularizers, x.shape[1], num_outputs, width, depth, seed
    )
    model.compile(
        optimizer=make_optimizer(optimizer),
        loss=group_mse if num_outputs == 1 else group_crossentropy,
    )
    start = time.perf_counter()
    model.fit(
        x,
        y,
        epochs=settings.epochs[data],
        batch_size=settings.batch_size,
        verbose=0,
    )
    seconds = time.perf_counter() - start
    train_predictions = model.predict(x, batch_size=4096, verbose=0)
    test_predictions = model.predict(x_test, batch_size=4096, verbose=0)
    penalties = member_penalties(model, len(members))
    train_loss = data_losses(y, train_predictions)
    test_loss = data_losses(y_test, test_predictions)
    metric = test_metrics(y_test, test_predictions)
    spread = prediction_spread(y_test, test_predictions)
    return [
        {
            "data": data,
            "optimizer": optimizer,
            "width": width,
            "depth": depth,
            "num_train": num_train,
            "seed": seed,
            "variant": variant_name(scale, num_examples),
            "factor": factor,
            "test_metric": _number(metric[i]),
            "test_data_loss": float(test_loss[i]),
            "data_loss": float(train_loss[i]),
            "penalty": float(penalties[i]),
            "collapsed": bool(spread[i] < COLLAPSE_RATIO),
            "group_seconds": round(seconds, 3),
            "group_size": len(members),
        }
        for i, (scale, num_examples, factor) in enumerate(members)
    ]


def _number(value):
    value = float(value)
    return None if math.isnan(value) else value


# ---------------------------------------------------------------- study


def configurations(settings):
    """Every `(data, optimizer, width, depth, num_train)` of the study."""
    width, depth = settings.reference
    shapes = [(w, depth) for w in settings.widths]
    shapes += [(width, d) for d in settings.depths if d != depth]
    result = []
    for data, optimizer in SETUPS:
        sweep_size, other_size = settings.num_train[data]
        for shape in shapes:
            result.append((data, optimizer, *shape, sweep_size))
        result.append((data, optimizer, width, depth, other_size))
    return result


def variants_of(group, settings):
    """`(scale, num_examples)` pairs trained in this group.

    `num_examples` only rescales the factor at a fixed data size, so its
    variants are trained on the reference model only, at both sizes.
    """
    plain = [(scale, False) for scale in PLAIN_SCALES]
    if tuple(group[2:4]) != settings.reference:
        return plain
    return plain + [(scale, True) for scale in PLAIN_SCALES]


def groups(settings):
    return [
        (*config, seed)
        for config in configurations(settings)
        for seed in settings.seeds
    ]


GROUP_FIELDS = ("data", "optimizer", "width", "depth", "num_train", "seed")


def group_key(group):
    data, optimizer, width, depth, num_train, seed = group
    return f"{data}/{optimizer}/w{width}/d{depth}/n{num_train}/s{seed}"


def record_key(record):
    return group_key(tuple(record[field] for field in GROUP_FIELDS))


# -------------------------------------------------------------- summary


def best_factor(factors, losses):
    """`(best, at_edge)`: the argmin refined by a parabola in log10."""
    logs = np.log10(factors)
    index = int(np.argmin(losses))
    if index in (0, len(losses) - 1):
        return float(factors[index]), True
    left, middle, right = losses[index - 1 : index + 2]
    curvature = left - 2 * middle + right
    offset = 0.0 if curvature <= 0 else 0.5 * (left - right) / curvature
    step = logs[index + 1] - logs[index]
    return float(10 ** (logs[index] + np.clip(offset, -1, 1) * step)), False


def curve(records, data, optimizer, width, depth, num_train, variant):
    """Mean over seeds per factor: `(factors, loss, metric, collapse)`."""
    chosen = [
        r
        for r in records
        if (r["data"], r["optimizer"], r["width"], r["depth"])
        == (data, optimizer, width, depth)
        and r["num_train"] == num_train
        and r["variant"] == variant
    ]
    factors = sorted({r["factor"] for r in chosen})
    by_factor = [[r for r in chosen if r["factor"] == f] for f in factors]
    # A diverged run (NaN loss) counts as the worst possible.
    return (
        np.array(factors),
        np.nan_to_num(
            [np.mean([r["test_data_loss"] for r in rs]) for rs in by_factor],
            nan=np.inf,
        ),
        np.array(
            [np.mean([r["test_metric"] or 0.0 for r in rs]) for rs in by_factor]
        ),
        np.array([np.mean([r["collapsed"] for r in rs]) for rs in by_factor]),
    )


def summarize(records, settings):
    """Best factors, drifts, the cost of reusing a factor, collapse rates.

    Per setup (data set and optimizer) and variant, for each axis (width,
    depth, data size; data size only for the `num_examples` variants):
    `best_factors` of the configurations along the axis (smallest model
    first), `at_edge` (the best is a grid end, so the drift is a lower
    bound), `drift` (largest / smallest best factor), the lowest mean test
    data loss of each configuration and the test metric there, and the
    reuse of the smallest model's best grid factor on the largest model:
    `reused_loss_increase` (relative) and `reused_metric_change`, both
    against the largest model's own best grid factor. Per setup and depth,
    the share of seeds collapsed at factor 0.01 under each plain scale.
    `overall_drift`: per variant, the geometric mean of its drifts;
    `worst_reused_metric_change`: its most negative metric change.
    """
    width, depth = settings.reference
    summary = {"setups": []}
    for data, optimizer in SETUPS:
        sweep_size, other_size = settings.num_train[data]
        small_size, large_size = sorted((sweep_size, other_size))
        configs_by_axis = {
            "width": [(w, depth, sweep_size) for w in settings.widths],
            "depth": [(width, d, sweep_size) for d in settings.depths],
            "data size": [(width, depth, n) for n in (small_size, large_size)],
        }
        scales = []
        for variant in PLAIN_SCALES + tuple(
            variant_name(s, True) for s in PLAIN_SCALES
        ):
            row = {"variant": variant}
            for axis, configs in configs_by_axis.items():
                if "+" in variant and axis != "data size":
                    continue
                curves = [
                    curve(records, data, optimizer, *c, variant)
                    for c in configs
                ]
                bests = [best_factor(f, loss) for f, loss, _, _ in curves]
                factors = [b for b, _ in bests]
                small, large = curves[0], curves[-1]
                reused = small[0][int(np.argmin(small[1]))]
                at = int(np.flatnonzero(large[0] == reused)[0])
                best_at = int(np.argmin(large[1]))
                lowest = [int(np.argmin(c[1])) for c in curves]
                row[axis] = {
                    "best_factors": factors,
                    "at_edge": [edge for _, edge in bests],
                    "best_test_data_loss": [
                        float(c[1][i])
                        for c, i in zip(curves, lowest, strict=True)
                    ],
                    "best_test_metric": [
                        float(c[2][i])
                        for c, i in zip(curves, lowest, strict=True)
                    ],
                    "drift": max(factors) / min(factors),
                    "reused_factor": float(reused),
                    "reused_loss_increase": float(
                        large[1][at] / large[1][best_at] - 1
                    ),
                    "reused_metric_change": float(
                        large[2][at] - large[2][best_at]
                    ),
                }
            scales.append(row)
        collapse = {}
        for d in settings.depths:
            rates = {}
            for scale in PLAIN_SCALES:
                factors, _, _, collapsed = curve(
                    records, data, optimizer, width, d, sweep_size, scale
                )
                rates[scale] = float(
                    collapsed[int(np.flatnonzero(factors == DEFAULT_FACTOR)[0])]
                )
            collapse[str(d)] = rates
        summary["setups"].append(
            {
                "data": data,
                "optimizer": optimizer,
                "scales": scales,
                "collapse_at_default_by_depth": collapse,
            }
        )
    setups = summary["setups"]
    summary["overall_drift"] = _over_all_axes(setups, "drift", _geometric_mean)
    summary["worst_reused_metric_change"] = _over_all_axes(
        setups, "reused_metric_change", min
    )
    return summary


def _over_all_axes(setups, field, reduce):
    """Per variant, `reduce` of `field` over every setup and axis."""
    return {
        row["variant"]: reduce(
            [
                setup["scales"][index][axis][field]
                for setup in setups
                for axis in AXES
                if axis in setup["scales"][index]
            ]
        )
        for index, row in enumerate(setups[0]["scales"])
    }


def _geometric_mean(values):
    return float(np.exp(np.mean(np.log(values))))


# ---------------------------------------------------------------- output


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
    figure, panels = plt.subplots(
        1, len(setups), figsize=(5 * len(setups), 4.2), sharey=True
    )
    for axes, setup in zip(panels, setups, strict=True):
        for color, row in enumerate(setup["scales"][: len(PLAIN_SCALES)]):
            reference = row["width"]["best_factors"][1]
            position = 0
            for axis in AXES:
                factors = np.array(row[axis]["best_factors"]) / reference
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
                position += len(factors) + 1
        labels = _tick_labels(settings, setup["data"])
        places = [i + (i >= 3) + (i >= 6) for i in range(len(labels))]
        axes.set_xticks(places, labels, rotation=45, ha="right")
        axes.set_yscale("log")
        axes.set_title(f"{setup['data']}, {setup['optimizer']}")
        axes.grid(alpha=0.3)
    panels[0].set_ylabel(
        "best factor / the reference model's (open: at a grid end)"
    )
    panels[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _tick_labels(settings, data):
    small, large = sorted(settings.num_train[data])
    return (
        [f"width {w}" for w in settings.widths]
        + [f"depth {d}" for d in settings.depths]
        + [f"{small} rows", f"{large} rows"]
    )


# ------------------------------------------------------------------ main


def load_records(path, mode):
    if not path.exists():
        return []
    saved = json.loads(path.read_text())
    if saved.get("mode") != mode:
        raise SystemExit(
            f"{path} holds a {saved.get('mode')!r} run, not {mode!r}; "
            "pass --restart to overwrite it"
        )
    return saved["records"]


def write(path, payload):
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload, indent=1) + "\n")
    temporary.replace(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--restart", action="store_true")
    parser.add_argument("--table", action="store_true")
    parser.add_argument(
        "--only", default="", help="train only groups whose key has this"
    )
    arguments = parser.parse_args(argv)
    mode = "quick" if arguments.quick else "full"
    settings = QUICK if arguments.quick else FULL
    arguments.output.mkdir(parents=True, exist_ok=True)
    path = arguments.output / "lambda_transfer.json"
    if arguments.table:
        print(format_tables(json.loads(path.read_text())["summary"]))
        return
    records = [] if arguments.restart else load_records(path, mode)
    done = {record_key(r) for r in records}
    start = time.perf_counter()
    base = {
        "mode": mode,
        "backend": keras.config.backend(),
        "settings": dataclasses.asdict(settings),
    }
    todo = [
        g
        for g in groups(settings)
        if group_key(g) not in done and arguments.only in group_key(g)
    ]
    for index, group in enumerate(todo, 1):
        records += train_group(group, settings)
        write(path, {**base, "records": records, "summary": None})
        print(
            f"[{index}/{len(todo)}] {group_key(group)} "
            f"{records[-1]['group_seconds']:.1f} s "
            f"(total {time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    if arguments.only:
        return
    summary = summarize(records, settings)
    write(path, {**base, "records": records, "summary": summary})
    plot(summary, settings, arguments.output / "lambda_transfer.png")
    print(format_tables(summary))


if __name__ == "__main__":
    sys.exit(main())
