"""The factor search's schedule: which fit to run next, and nothing else.

Pure Python and stateless: `next_fits(plan, records, running)` derives the
whole state of a search from the fits that have finished (`records`) and
those still running, so a search resumes from its saved records, and many
workers can share one search (the KerasTuner oracle asks the same
function). The two drivers, `keras_scaled_l2.search_factor` in one process
and `keras_scaled_l2.tuner.FactorSearchOracle` over KerasTuner's workers,
only run what it returns.

The grid is log-spaced, `factor(i) = prior * step**i` for integer `i`, so a
grid point is named by its index and a widened grid keeps its points. One
search goes:

1. **Short fits, rung 0.** Every grid factor is fitted for the first rung's
   epochs. While the best lies at an edge of the grid, the grid widens by
   `widen_steps` factors on that side (at most `max_widenings` times a
   side), never past a collapse.
2. **Successive halving.** From each rung, `ceil(n / reduction)` factors
   go on to the next, continued from where their fit stopped. The factors
   kept are the rung's best and the next larger ones: a penalty pays off
   late, once the network starts to overfit, so a short fit favours a
   factor that is too small, never one that is too large. A factor smaller
   than a short fit's best loses there and loses more later.
3. **Full fits widen too.** While the best full fit is the largest or the
   smallest factor fitted in full and its neighbour on that side is not past
   a collapse, that neighbour is fitted in full.
4. **Seeds where the noise cannot decide.** With `seeds > 1`, the best
   factor and those of its neighbours fitted in full that the validation
   noise cannot tell from it (`tied`; all of them when the driver cannot
   measure the noise) are fitted again with seeds `1 .. seeds - 1`, while
   the budget allows a whole seed; the choice is then the best mean over
   the seeds. A best factor that stands out beyond the noise is chosen
   with one seed.

A collapse (a fit whose predictions became constant) marks a cliff: no
factor at or above the lowest collapsed one is fitted again or chosen. A
failed fit (a score that is not finite) is never promoted or chosen.
Every fit is charged the epochs it trains; no fit starts that would take
the search past `budget` epochs: `check_plan` refuses a budget that cannot
pay for steps 1 and 2 on the initial grid, a widening is made only where
the budget pays for halving the widened grid, and steps 3 and 4 take what
is left.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

from keras_scaled_l2._validation import invalid_argument


class Fit(NamedTuple):
    """One fit to run: train factor `grid_index` with `seed` up to
    `epochs`.

    `initial_epoch > 0` continues the fit of the same index and seed that
    stopped at that epoch.
    """

    grid_index: int
    seed: int
    epochs: int
    initial_epoch: int


class Record(NamedTuple):
    """A finished fit: its validation data loss and whether it collapsed."""

    grid_index: int
    seed: int
    epochs: int
    score: float
    collapsed: bool


@dataclasses.dataclass(frozen=True)
class Plan:
    """The settings of one search; see `keras_scaled_l2.search_factor`."""

    epochs: int
    num_factors: int = 5
    reduction: int = 2
    num_rungs: int = 2
    seeds: int = 1
    widen_steps: int = 2
    max_widenings: int = 2
    budget: int | None = None

    @property
    def rungs(self) -> list[int]:
        """The epochs each rung trains to, the last being `epochs`."""
        return [
            math.ceil(self.epochs / self.reduction ** (self.num_rungs - 1 - k))
            for k in range(self.num_rungs)
        ]

    @property
    def initial_indices(self) -> list[int]:
        """The grid before any widening, centred on the prior (index 0)."""
        low = -(self.num_factors // 2)
        return list(range(low, low + self.num_factors))

    def halving_cost(self, count: int | None = None) -> int:
        """Epochs of steps 1-2 on a grid of `count` factors (by default the
        initial grid)."""
        rungs = self.rungs
        count = self.num_factors if count is None else count
        cost = count * rungs[0]
        for previous, rung in itertools.pairwise(rungs):
            count = math.ceil(count / self.reduction)
            cost += count * (rung - previous)
        return cost

    @property
    def total_budget(self) -> int:
        """`budget`, or by default the halving's cost plus two full fits."""
        if self.budget is not None:
            return self.budget
        return self.halving_cost() + 2 * self.epochs


def check_plan(plan: Plan) -> None:
    """Raises a `ValueError` naming the argument a `Plan` cannot run with."""
    rungs = plan.rungs
    if any(b <= a for a, b in itertools.pairwise(rungs)):
        raise invalid_argument(
            "num_rungs",
            f"at most as many rungs as `epochs={plan.epochs}` allows with "
            f"`reduction={plan.reduction}` (each rung longer than the one "
            f"before; rungs would be {rungs})",
            plan.num_rungs,
        )
    if plan.num_rungs < 2:
        raise invalid_argument(
            "num_rungs",
            "at least 2: short fits, then full ones",
            plan.num_rungs,
        )
    minimum = plan.halving_cost()
    if plan.total_budget < minimum:
        raise invalid_argument(
            "budget",
            f"at least the halving's epochs: one short fit per factor "
            f"({plan.num_factors} x {rungs[0]} epochs) and the fits it "
            f"continues, {minimum} epochs in all",
            plan.budget,
        )


@dataclasses.dataclass
class Decision:
    """What `next_fits` says: fits to start now, or that the search is done.

    `fits` empty and `done` false: wait for running fits to finish.
    """

    fits: list[Fit]
    done: bool
    chosen: int | None = None
    finalists: list[int] = dataclasses.field(default_factory=list)


class _State:
    """What the finished and running fits say, indexed for the rules."""

    def __init__(self, plan, records, running):
        self.plan = plan
        self.scores = {}
        self.collapsed = set()
        for record in records:
            self.scores[(record.grid_index, record.seed, record.epochs)] = (
                record.score
            )
            if record.collapsed:
                self.collapsed.add(record.grid_index)
        self.running = {
            (fit.grid_index, fit.seed, fit.epochs) for fit in running
        }
        self.spent = epochs_spent([*records, *running])

    @property
    def cliff(self):
        return min(self.collapsed) if self.collapsed else math.inf

    def fit(self, index, seed, epochs):
        """The fit that brings (index, seed) to `epochs` from where it is."""
        done = [
            e
            for (i, s, e) in self.scores
            if i == index and s == seed and e < epochs
        ]
        return Fit(index, seed, epochs, max(done, default=0))

    def cost(self, fits):
        return sum(fit.epochs - fit.initial_epoch for fit in fits)

    def affordable(self, fits):
        return self.spent + self.cost(fits) <= self.plan.total_budget

    def scored(self, index, seed, epochs):
        """Whether the fit finished with a finite score (not failed)."""
        score = self.scores.get((index, seed, epochs))
        return score is not None and math.isfinite(score)

    def failed(self, index):
        """Whether some fit of `index` ended without a finite score."""
        return any(
            i == index and not math.isfinite(score)
            for (i, _, _), score in self.scores.items()
        )

    def best(self, indices, epochs, seed=0):
        scored = [
            i
            for i in indices
            if self.scored(i, seed, epochs) and i < self.cliff
        ]
        if not scored:
            return None
        return min(scored, key=lambda i: (self.scores[(i, seed, epochs)], i))


Tied = Callable[[int, list[int]], list[int]]
"""`tied(best, finalists)`: the finalists (grid indices fitted in full with
seed 0) that the validation noise cannot tell from `best`, `best` among
them."""


def next_fits(
    plan: Plan,
    records: Iterable[Record],
    running: Iterable[Fit] = (),
    tied: Tied | None = None,
) -> Decision:
    """The fits to start now, given those finished and those running, and
    (`tied`) which finalists the noise cannot tell apart, if known."""
    state = _State(plan, list(records), list(running))
    rungs = plan.rungs

    # Step 1: every grid factor at rung 0, widening while the best is at
    # an edge.
    grid = _widened_grid(
        plan,
        {i for (i, s, e) in state.scores if e == rungs[0] and s == 0}
        | {i for (i, s, e) in state.running if e == rungs[0] and s == 0},
    )
    missing = _missing(state, grid, 0, rungs[0])
    if missing is not None:
        return missing
    grid = [i for i in grid if i < state.cliff]
    if not grid:
        # Every factor collapsed: widen below the smallest, or give up.
        grid = [min(plan.initial_indices + list(state.collapsed))]
        return _widen(state, grid, -1, rungs[0]) or Decision([], done=True)
    best = state.best(grid, rungs[0])
    if best is None:  # every fit failed
        return Decision([], done=True)
    for side, edge in ((-1, grid[0]), (1, grid[-1])):
        if best == edge:
            decision = _widen(state, grid, side, rungs[0])
            if decision is not None:
                return decision

    # Step 2: successive halving, keeping the best and the larger factors.
    candidates = grid
    for previous, rung in itertools.pairwise(rungs):
        candidates = _promoted(state, candidates, previous)
        missing = _missing(state, candidates, 0, rung)
        if missing is not None:
            return missing
        candidates = [i for i in candidates if i < state.cliff]

    # Step 3: full fits widen while the best is at the edge of those fitted.
    final = rungs[-1]
    while True:
        fitted = sorted(
            i
            for (i, s, e) in state.scores
            if s == 0
            and e == final
            and i < state.cliff
            and state.scored(i, 0, final)
        )
        if not fitted:
            return Decision([], done=True)
        best = state.best(fitted, final)
        for neighbour in (best - 1, best + 1):
            if neighbour in fitted or neighbour >= state.cliff:
                continue
            if neighbour < best and best != fitted[0]:
                continue
            if neighbour > best and best != fitted[-1]:
                continue
            if not _in_reach(plan, neighbour):
                continue
            if state.failed(neighbour):
                continue  # a failed fit bounds the search like an edge
            if (neighbour, 0, final) in state.running:
                return Decision([], done=False)
            fit = state.fit(neighbour, 0, final)
            if state.affordable([fit]):
                return Decision([fit], done=False)
        break

    # Step 4: more seeds for the best and the neighbours fitted in full
    # that the noise cannot tell from it.
    finalists = [i for i in (best - 1, best, best + 1) if i in fitted]
    seeds = plan.seeds
    if tied is not None and seeds > 1:
        finalists = sorted(set(tied(best, finalists)) | {best})
        if finalists == [best]:
            seeds = 1  # it stands out beyond the noise
    complete = [0]
    for seed in range(1, seeds):
        todo = [i for i in finalists if (i, seed, final) not in state.scores]
        if not todo:
            complete.append(seed)
            continue
        fits = [
            state.fit(i, seed, final)
            for i in todo
            if (i, seed, final) not in state.running
        ]
        if not fits:
            return Decision([], done=False)
        if state.affordable(fits):
            return Decision(fits, done=False)
        break
    finalists = [
        i
        for i in finalists
        if i < state.cliff and all(state.scored(i, s, final) for s in complete)
    ]
    if not finalists:
        return Decision([], done=True)
    chosen = min(
        finalists,
        key=lambda i: (
            sum(state.scores[(i, s, final)] for s in complete) / len(complete),
            i,
        ),
    )
    return Decision([], done=True, chosen=chosen, finalists=finalists)


def _widened_grid(plan, seen):
    """The initial grid, widened by whole widenings to cover `seen`.

    A widening adds `widen_steps` factors at once: when some of them have
    started (another worker asked for the first), the rest belong to the
    grid too, so that fits handed out one at a time widen as fits handed
    out together do.
    """
    indices = plan.initial_indices
    low, high = indices[0], indices[-1]
    step = plan.widen_steps
    if seen and min(seen) < low:
        low -= step * math.ceil((low - min(seen)) / step)
    if seen and max(seen) > high:
        high += step * math.ceil((max(seen) - high) / step)
    return list(range(low, high + 1))


def _missing(state, indices, seed, epochs):
    """The fits still needed at one rung, or `None` when all have scores."""
    needed = [i for i in indices if (i, seed, epochs) not in state.scores]
    if not needed:
        return None
    fits = [
        state.fit(i, seed, epochs)
        for i in needed
        if (i, seed, epochs) not in state.running
    ]
    return Decision(fits, done=False)


def _widen(state, grid, side, epochs):
    """Rung-0 fits of `widen_steps` new factors beyond one edge, if allowed."""
    plan = state.plan
    edge = grid[0] if side < 0 else grid[-1]
    new = [edge + side * k for k in range(1, plan.widen_steps + 1)]
    new = [i for i in new if i < state.cliff and _in_reach(plan, i)]
    fits = [Fit(i, 0, epochs, 0) for i in new]
    if not fits:
        return None
    # The widened grid must still leave the epochs to halve it.
    count = len(grid) + len(fits)
    rest = plan.halving_cost(count) - count * plan.rungs[0]
    if state.spent + state.cost(fits) + rest > plan.total_budget:
        return None
    return Decision(fits, done=False)


def _in_reach(plan, index):
    """Whether `index` lies within `max_widenings` widenings of the grid."""
    reach = plan.widen_steps * plan.max_widenings
    indices = plan.initial_indices
    return indices[0] - reach <= index <= indices[-1] + reach


def _promoted(state, candidates, epochs):
    """The best of a rung and the next larger factors, `ceil(n / r)` in all.

    Short fits favour small factors, so the window starts at the best and
    reaches up; it reaches down only where the larger side runs out.
    """
    candidates = [i for i in candidates if state.scored(i, 0, epochs)]
    keep = math.ceil(len(candidates) / state.plan.reduction)
    best = state.best(candidates, epochs)
    if best is None:
        return []
    position = candidates.index(best)
    start = max(0, min(position, len(candidates) - keep))
    return candidates[start : start + keep]


def epochs_spent(records: Iterable[Record | Fit]) -> int:
    """Epochs trained (or training) over every fit: each index and seed's
    furthest epoch, since a continued fit trains on from the last."""
    reached: dict[tuple[int, int], int] = {}
    for record in records:
        pair = (record.grid_index, record.seed)
        reached[pair] = max(reached.get(pair, 0), record.epochs)
    return sum(reached.values())


def build_seed(seed: int) -> int:
    """The random seed a model is built with: the same for every factor of
    a seed, so that the factors start from the same weights."""
    return 1000 + seed


def fit_seed(fit: Fit) -> int:
    """The random seed of one fit's shuffles and dropout, fixed by the fit
    alone so that a resumed search repeats it."""
    return 7919 * (fit.grid_index + 1000) + 104729 * fit.seed + fit.epochs


def factor_of(prior: float, step: float, index: int) -> float:
    """The factor at grid `index`: `prior * step**index`."""
    return prior * step**index


def run_in_turn(
    plan: Plan,
    run_fit: Callable[[Fit], Record],
    records: list[Record],
    on_record: Callable[[list[Record]], None] | None = None,
    tied: Tied | None = None,
) -> Decision:
    """Runs the schedule to its end, one fit at a time, in this process.

    `run_fit` trains a fit and returns its record; each is appended to
    `records` (in place: a search resumes from the list it had), then
    `on_record(records)` is called. One fit, then the schedule is asked
    again: a collapse or a failure changes what the rest should be.
    `tied` is passed on to `next_fits`. Returns the final `Decision`.
    """
    while True:
        decision = next_fits(plan, records, tied=tied)
        if decision.done:
            return decision
        records.append(run_fit(decision.fits[0]))
        if on_record is not None:
            on_record(records)
