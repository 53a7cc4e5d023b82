"""Attaching penalties to the kernels of an existing model."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from typing import NamedTuple

import keras
import numpy as np

from keras_scaled_l2 import _keras_internals, _persistence
from keras_scaled_l2._kernels import SUPPORTED_LAYERS, Kernel, layer_kernels
from keras_scaled_l2._layer_names import weight_namer
from keras_scaled_l2._layer_walk import LayerVisit, walk_layers
from keras_scaled_l2._penalty_tools import (
    is_anchored,
    penalty_label,
    replaced,
    same_penalty,
)
from keras_scaled_l2._validation import (
    invalid_argument,
    is_bool,
    validate_flag,
)
from keras_scaled_l2._warnings import warn_at_caller
from keras_scaled_l2.regularizers import ScaledRegularizer


def attach_regularizer(
    model: keras.layers.Layer,
    regularizer: keras.regularizers.Regularizer
    | str
    | Callable[
        [keras.layers.Layer, keras.Variable],
        keras.regularizers.Regularizer | None,
    ],
    include: str
    | type[keras.layers.Layer]
    | Iterable[str | type[keras.layers.Layer]]
    | None = None,
    exclude: str
    | type[keras.layers.Layer]
    | Iterable[str | type[keras.layers.Layer]]
    | None = None,
    normalize_depth: bool = False,
    include_embeddings: bool = True,
    anchor: bool
    | str
    | type[keras.layers.Layer]
    | Iterable[str | type[keras.layers.Layer]] = False,
) -> list[str]:
    """Attaches a weight penalty to every kernel of a built model.

    Walks the model, nested models and wrappers included, and sets the
    penalty on the kernels of `Dense`, `EinsumDense` (fan axes derived from
    its equation), convolution, `Embedding` and recurrent layers (kernel and
    recurrent kernel) and `MultiHeadAttention` projections. Biases and
    normalization parameters are left alone. Both the weight and the layer
    attribute its config saves are set: `model.losses` shows the penalty at
    once, layer configs show it, and saved models reload with it. The
    weights themselves are untouched. A compiled model gets new step
    functions at its next `fit` / `evaluate`.

    A scaled regularizer without fan axes gets, for each `EinsumDense`
    kernel, a copy with the axes of its equation.
    `MultiHeadAttention` saves one regularizer for its four projections,
    whose fan axes differ, so under a fan-based scale (`fan_in`,
    `fan_out`, `balanced`) it is skipped with a warning (an error when
    `include` names it); Keras's own regularizers and the `none` and
    `size` scales attach to it fully.

    A kernel that already has a different penalty gets the new one in its
    place, with one warning per call that lists each such kernel with its
    old and new penalty (`'head/kernel': L2(0.01) -> ScaledL2(0.01,
    balanced)`); attaching the same penalty again changes nothing and does
    not warn. A call that would attach nothing raises: a model that is not
    built or holds no kernel, or an `include` that selects none.

    With `anchor`, the penalty of a kernel pulls toward its values now,
    `w0`, rather than toward zero: `factor * s(shape) * norm(w - w0)`, the
    L2-SP of Li, Grandvalet and Davoine (2018) for fine-tuning a pretrained
    model. Each anchored kernel costs one more copy of itself (float32).
    `anchor="backbone"` anchors the layers of a pretrained backbone and
    leaves a new head with the penalty toward zero, in one call; each
    projection of a `MultiHeadAttention` layer gets its own starting
    weights (and is then restored by `keras_scaled_l2.load_model`).

    Examples:
        >>> from keras_scaled_l2 import ScaledL2
        >>> model = keras.Sequential([
        ...     keras.Input((8,)),
        ...     keras.layers.Dense(16, name="hidden"),
        ...     keras.layers.BatchNormalization(),
        ...     keras.layers.Dense(1, name="out"),
        ... ], name="mlp")
        >>> attach_regularizer(model, ScaledL2(0.01))
        ['hidden/kernel', 'out/kernel']
        >>> len(model.losses)
        2

        Fine-tuning: the pretrained layers pull toward their starting
        weights, the new head toward zero.

        >>> backbone = keras.Sequential(
        ...     [keras.Input((8,)), keras.layers.Dense(16, name="hidden")],
        ...     name="backbone",
        ... )
        >>> model = keras.Sequential(
        ...     [backbone, keras.layers.Dense(3, name="head")], name="tuned"
        ... )
        >>> attach_regularizer(model, ScaledL2(0.01), anchor="backbone")
        ['backbone/hidden/kernel', 'head/kernel']
        >>> float(model.losses[0])  # the backbone has not moved yet
        0.0

    Args:
        model: A built Keras model (or layer).
        regularizer: A regularizer (an instance, or a name such as `"l2"`),
            or a callable `factory(layer, weight)` returning a regularizer or
            `None` (leave that kernel alone).
        include: Optional list of layer selectors; only layers they match
            (and layers inside those) get penalties. A selector is a layer
            class, or a string matched (with `*` wildcards) against layer
            names and class names. A selector without wildcards that names
            no layer of the model, or a layer of a kind
            `attach_regularizer` cannot handle, raises a `ValueError`, and
            so does a selection without a kernel. Defaults to every
            supported layer.
        exclude: Optional list of selectors of layers to leave alone
            (with everything inside them); a selector without wildcards
            must name a layer of the model. Defaults to none.
        normalize_depth: Bool. If `True`, every penalty this call attaches
            gets `num_kernels=K`, the number of kernels it attaches (in place
            of any `num_kernels` the regularizer had), so that their total
            is the factor times the mean over the kernels rather than their
            sum, and one factor fits shallow and deep models alike.
            Penalties already on the model are neither counted nor changed.
            Needs the package's regularizers. Defaults to `False`.
        include_embeddings: Bool. If `False`, the lookup tables of
            `Embedding` layers (KerasHub's token and position embeddings
            too) get no penalty; an untied `ReversibleEmbedding`'s output
            projection, a matmul kernel, still does. Defaults to `True`.
        anchor: `True` to pull every penalty this call attaches toward the
            kernel's values now (its starting weights), or selectors, as
            for `include`, of the layers whose kernels it pulls so; the
            others' penalties pull toward zero. Needs a built model whose
            kernels hold their starting values (load the pretrained weights
            first), and the package's regularizers. Defaults to `False`
            (every penalty toward zero).

    Returns:
        The names of the kernels that got a penalty, in the order found:
        the names of the layers below `model` that hold it, then its own
        (`backbone/conv/kernel`). `penalty_report` shows the same name, as
        a row's `layer` and `weight`; unlike `weight.path`, it names the
        layers of a nested functional model too, and stays the same when
        the model is reloaded.

    Raises:
        ValueError: for a bad argument: a `model` that is not a built Keras
            layer or holds no kernel, an `include` that selects no kernel,
            an `include` or `exclude` name that matches no layer; with
            `anchor`, also for a selection with no kernel to anchor.
    """
    model = _validated_model(model)
    factory = _as_factory(regularizer)
    given = {"include": include, "exclude": exclude}  # for error messages
    include = _selectors(include, "include")
    exclude = _selectors(exclude, "exclude")
    normalize_depth = validate_flag(normalize_depth, "normalize_depth")
    include_embeddings = validate_flag(include_embeddings, "include_embeddings")
    if not include_embeddings:
        factory = _without_embedding_tables(factory)
    anchor = _anchor_selectors(anchor, model)
    if not model.built:
        raise invalid_argument(
            "model",
            "a built model: its kernels do not exist before it is built "
            "(call it on a batch, or model.build(input_shape), first)",
            model,
        )
    _check_names_match(model, include, "include", given["include"])
    _check_names_match(model, exclude, "exclude", given["exclude"])
    plan: list[_Assignment] = []
    if not _walk(model, factory, include, exclude, anchor, plan):
        _refuse_empty_selection(model, include, exclude, given)
    if normalize_depth:
        plan = _normalized_depth(plan)
    if anchor is not None:
        plan = _anchored(plan, model)
    name_of = weight_namer(model)
    attached: list[str] = []
    # (old penalty, new penalty): the kernels that changed so.
    replacements: dict[tuple[str, str], list[str]] = {}
    for assignment in plan:
        if assignment.attention is not None:
            _keras_internals.set_attention_kernel_regularizer(
                assignment.attention,
                None if assignment.anchored else assignment.regularizer,
            )
        for kernel in assignment.kernels:
            name = name_of(kernel.weight)
            old = kernel.weight.regularizer
            if old is not None and not _unchanged(old, assignment.regularizer):
                replacements.setdefault(
                    _change(old, assignment.regularizer), []
                ).append(name)
            kernel.set_regularizer(assignment.regularizer)
            attached.append(name)
    _keras_internals.drop_step_functions(model)
    if plan:
        _persistence.remember(model, [k for a in plan for k in a.kernels])
    if replacements:  # last: the model is complete even if warnings raise
        _warn_of_replacements(replacements)
    return attached


def _validated_model(model):
    if not isinstance(model, keras.layers.Layer):
        raise invalid_argument("model", "a Keras model or layer", model)
    return model


def _check_names_match(model, selectors, name, given):
    """Refuses a name in `selectors`, without wildcards, that no layer has.

    A typo would otherwise select nothing, or exclude nothing, silently.
    """
    literal = [
        s
        for s in selectors or ()
        if isinstance(s, str) and not any(c in s for c in "*?[")
    ]
    if not literal:
        return
    layers = [visit.layer for visit in walk_layers(model)]
    known = {n for layer in layers for n in (layer.name, type(layer).__name__)}
    unknown = [s for s in literal if s not in known]
    if not unknown:
        return
    names = [
        repr(layer.name)
        for layer in layers[1:]
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    listed = ", ".join(names[:10]) or "none"
    if len(names) > 10:
        listed += f" and {len(names) - 10} more"
    raise invalid_argument(
        name,
        "layer classes or name patterns, each name that of a layer or a "
        f"layer class of '{model.name}' "
        f"({', '.join(repr(s) for s in unknown)} matches none; its layers: "
        f"{listed})",
        given,
    )


def _refuse_empty_selection(model, include, exclude, given):
    """Raises for a call that selects no kernel: it would attach nothing."""
    if include is not None:
        raise invalid_argument(
            "include",
            "layer classes or name patterns that select at least one "
            f"kernel of '{model.name}' (a layer of a kind "
            "attach_regularizer knows, or one holding such layers; a part "
            "of a layer whose kernels it sets together, such as an "
            "attention projection or a recurrent cell, is selected through "
            f"that layer. Supported: {_SUPPORTED})",
            given["include"],
        )
    if exclude is not None:
        raise invalid_argument(
            "exclude",
            "layer classes or name patterns that leave at least one kernel "
            f"of '{model.name}' to penalise",
            given["exclude"],
        )
    raise invalid_argument(
        "model",
        "a model holding at least one kernel of a kind attach_regularizer "
        f"knows (Supported: {_SUPPORTED})",
        model,
    )


def _unchanged(old, new):
    """Whether `new` computes the penalty `old` does: no need to warn.

    Penalties toward starting weights are the same when their configs and
    their starting weights are: anchoring again an untrained kernel is.
    """
    if same_penalty(old, new):
        return True
    if not (is_anchored(old) and is_anchored(new)):
        return False
    if not same_penalty(replaced(old, anchor=None), replaced(new, anchor=None)):
        return False
    try:
        return np.array_equal(old.anchor_values(), new.anchor_values())
    except ValueError:  # rebuilt from a config, its weights not restored
        return False


def _change(old, new):
    """`(old, new)` described; with fan axes where only those differ."""
    change = (_described(old), _described(new))
    if change[0] == change[1]:
        change = (_described(old, True), _described(new, True))
    return change


def _described(regularizer, with_axes=False):
    label = penalty_label(regularizer)
    if with_axes and _has_axes(regularizer):
        label = (
            f"{label[:-1]}, input_axes={regularizer.input_axes}, "
            f"output_axes={regularizer.output_axes})"
        )
    if is_anchored(regularizer):
        return f"{label} toward its starting weights"
    return label


def _warn_of_replacements(replacements):
    """One warning: per change of penalty, the kernels that changed so."""
    changes = []
    for (old, new), names in replacements.items():
        listed = ", ".join(f"'{name}'" for name in names[:5])
        if len(names) > 5:
            listed += f" and {len(names) - 5} more"
        changes.append(f"{listed}: {old} -> {new}")
    listed = "; ".join(changes)
    count = sum(len(names) for names in replacements.values())
    warn_at_caller(
        f"attach_regularizer replaced the penalty already on {count} "
        f"kernel{'s' if count > 1 else ''}: {listed}. To keep a kernel's "
        "own penalty, leave its layer out with `exclude`, or pass a factory "
        "that returns None for it; penalty_report(model) shows each "
        "kernel's penalty."
    )


def _without_embedding_tables(factory):
    def factory_without_tables(layer, weight):
        if isinstance(layer, keras.layers.Embedding) and weight is getattr(
            layer, "embeddings", None
        ):
            return None
        return factory(layer, weight)

    return factory_without_tables


class _Assignment(NamedTuple):
    """One regularizer for some kernels (all four of an attention layer)."""

    kernels: list[Kernel]
    regularizer: keras.regularizers.Regularizer
    # The attention layer whose saved regularizer this sets (anchored: its
    # projections' own, which it cannot save, so it is cleared).
    attention: keras.layers.MultiHeadAttention | None = None
    anchored: bool = False  # toward the kernel's values now (one kernel)


_SUPPORTED = ", ".join(sorted(k.__name__ for k in SUPPORTED_LAYERS))
"""The layer classes whose kernels `attach_regularizer` knows, for errors."""

_EVERY_KERNEL = "every kernel"
"""`anchor=True`: every kernel the call penalises pulls toward its start."""


def _anchor_selectors(anchor, model):
    """`None` (no anchor), `_EVERY_KERNEL` or the selectors given."""
    if is_bool(anchor) and not anchor:
        return None
    if is_bool(anchor):
        selectors = _EVERY_KERNEL
    elif anchor is None:
        raise invalid_argument(
            "anchor", "True, False, layer classes or name patterns", anchor
        )
    else:
        selectors = _selectors(anchor, "anchor")
    if not model.built:
        raise ValueError(
            f"attach_regularizer cannot anchor the penalties of "
            f"'{model.name}' ({type(model).__name__}): it is not built, so "
            "its kernels have no starting values yet. Build it (call it on "
            "a batch, or model.build(input_shape)) and load its pretrained "
            "weights first."
        )
    return selectors


def _anchored(plan, model):
    """The plan with each anchored kernel's regularizer given its values."""
    anchored = []
    for assignment in plan:
        if not assignment.anchored:
            anchored.append(assignment)
            continue
        (kernel,) = assignment.kernels
        regularizer = assignment.regularizer
        if not isinstance(regularizer, ScaledRegularizer):
            raise invalid_argument(
                "regularizer",
                "ScaledL2, ScaledL1 or ScaledL1L2 with anchor (only they "
                "pull toward starting weights)",
                regularizer,
            )
        anchored.append(
            assignment._replace(
                regularizer=replaced(regularizer, anchor=kernel.weight)
            )
        )
    if not any(a.anchored for a in anchored):
        raise ValueError(
            f"attach_regularizer found no kernel of '{model.name}' to anchor "
            "to its starting weights: `anchor` (and `include` / `exclude`) "
            "select no layer holding one of the kinds it knows. Supported: "
            f"{_SUPPORTED}."
        )
    return anchored


def _normalized_depth(plan):
    count = sum(len(a.kernels) for a in plan)
    normalized = []
    for assignment in plan:
        regularizer = assignment.regularizer
        if not isinstance(regularizer, ScaledRegularizer):
            raise invalid_argument(
                "regularizer",
                "ScaledL2, ScaledL1 or ScaledL1L2 with normalize_depth=True "
                "(only they carry `num_kernels` through a save and reload)",
                regularizer,
            )
        normalized.append(
            assignment._replace(
                regularizer=replaced(regularizer, num_kernels=count)
            )
        )
    return normalized


def _walk(model, factory, include, exclude, anchor, plan):
    """Plans the penalties of every included kernel below `model`.

    Returns whether the selection holds a kernel (whether or not the
    factory gave it a penalty).
    """
    selected = False
    included: dict[int, bool] = {}  # id(layer): inside an included layer
    anchored: dict[int, bool] = {}  # id(layer): inside an anchored layer
    # id(layer): a layer whose sub-layers are not walked (it is excluded,
    # or its kernels are planned here, the attention projections too).
    handled: set[int] = set()

    def descend(visit: LayerVisit) -> bool:
        return id(visit.layer) not in handled

    for visit in walk_layers(model, descend):
        layer = visit.layer
        if exclude and _matches(layer, exclude):
            handled.add(id(layer))
            continue
        explicit = bool(include) and _matches(layer, include, literal_only=True)
        inside = (
            include is None
            if visit.parent is None
            else included[id(visit.parent.layer)]
        )
        included[id(layer)] = inside or (
            bool(include) and _matches(layer, include)
        )
        anchored[id(layer)] = anchor is not None and (
            anchor is _EVERY_KERNEL
            or (visit.parent is not None and anchored[id(visit.parent.layer)])
            or _matches(layer, anchor)
        )
        if isinstance(layer, keras.layers.MultiHeadAttention):
            handled.add(id(layer))
            if included[id(layer)]:
                selected = selected or bool(layer_kernels(layer))
                _plan_attention(
                    layer, factory, explicit, anchored[id(layer)], plan
                )
            continue
        kernels = layer_kernels(layer)
        if kernels:
            handled.add(id(layer))
            if included[id(layer)]:
                selected = True
                for kernel in kernels:
                    _plan(
                        kernel,
                        factory(kernel.layer, kernel.weight),
                        anchored[id(layer)],
                        plan,
                    )
        elif explicit and not _keras_internals.sublayers(layer):
            raise ValueError(
                f"attach_regularizer cannot attach a penalty to layer "
                f"'{layer.name}' ({type(layer).__name__}): it has no kernel "
                "of a kind it knows. Supported: "
                f"{_SUPPORTED}."
            )
    return selected


def _plan(kernel, regularizer, anchored, plan):
    if regularizer is None:
        return
    if (
        isinstance(regularizer, ScaledRegularizer)
        and regularizer.input_axes is None
        and kernel.input_axes is not None
    ):
        regularizer = replaced(
            regularizer,
            input_axes=kernel.input_axes,
            output_axes=kernel.output_axes,
        )
    plan.append(_Assignment([kernel], regularizer, anchored=anchored))


def _plan_attention(layer, factory, explicit, anchored, plan):
    kernels = layer_kernels(layer)
    regularizers = [factory(k.layer, k.weight) for k in kernels]
    if anchored:
        # Starting weights differ per projection: each gets its own
        # penalty, which the layer's config cannot save (the record does),
        # and the one it saves is cleared: no reload of its config brings
        # back a penalty toward zero in their place.
        for kernel, regularizer in zip(kernels, regularizers, strict=True):
            _plan(kernel, regularizer, True, plan)
            if regularizer is not None:
                plan[-1] = plan[-1]._replace(attention=layer)
        return
    regularizer = regularizers[0]
    same = all(same_penalty(regularizer, r) for r in regularizers)
    if same and not _has_axes(regularizer):
        # One regularizer for all four projections, as the config saves
        # it; a scaled one finds each projection's fans when it computes.
        if regularizer is not None:
            plan.append(_Assignment(kernels, regularizer, layer))
        return
    message = (
        f"MultiHeadAttention layer '{layer.name}' keeps one kernel "
        "regularizer for its query, key, value and output projections, so "
        "different penalties per projection, or one with fixed "
        "`input_axes` / `output_axes` (which fit one projection at most), "
        "would not be what it saves and reloads. Give it one regularizer "
        "without axes: a scaled one takes each projection's fans from its "
        "equation."
    )
    if explicit:
        raise ValueError(message)
    warn_at_caller(message + " It was left without a penalty.")


def _has_axes(regularizer):
    return (
        isinstance(regularizer, ScaledRegularizer)
        and regularizer.input_axes is not None
    )


def _as_factory(regularizer):
    if isinstance(regularizer, str):
        regularizer = keras.regularizers.get(regularizer)
    if isinstance(regularizer, ScaledRegularizer) and regularizer.anchored:
        raise invalid_argument(
            "regularizer",
            "a regularizer without starting weights (its own `anchor` fits "
            "one kernel; `anchor=True` gives each kernel its own)",
            regularizer,
        )
    if isinstance(regularizer, keras.regularizers.Regularizer):
        return lambda layer, weight: regularizer
    if callable(regularizer):
        return regularizer
    raise invalid_argument(
        "regularizer",
        "a Keras regularizer or a callable factory(layer, weight)",
        regularizer,
    )


def _selectors(selectors, name):
    if selectors is None:
        return None
    if isinstance(selectors, (str, type)):
        selectors = [selectors]
    if not isinstance(selectors, Iterable):
        raise invalid_argument(
            name, "layer classes or name patterns", selectors
        )
    selectors = list(selectors)
    for selector in selectors:
        if not isinstance(selector, (str, type)):
            raise invalid_argument(
                name, "layer classes or name patterns", selectors
            )
    return selectors


def _matches(layer, selectors, literal_only=False):
    for selector in selectors:
        if isinstance(selector, type):
            if isinstance(layer, selector):
                return True
            continue
        if literal_only and any(c in selector for c in "*?["):
            continue
        names = (layer.name, type(layer).__name__)
        if any(fnmatch.fnmatchcase(n, selector) for n in names):
            return True
    return False
