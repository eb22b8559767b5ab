"""Choose among the candidates the planner has costed.

:func:`choose` picks the fewest, smallest indexes that give each query (nearly) its
best plan; :func:`choose_within` picks by saving per byte within a size budget;
:func:`unserved` says why each query left out got nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from pgwarden._units import format_size
from pgwarden.advise.candidates import Candidate
from pgwarden.advise.queries import Query, SkippedQuery
from pgwarden.advise.report import ServedQuery

__all__ = [
    "BRIN_SIZE_RATIO",
    "MIN_SAVING",
    "TOLERANCE",
    "Threshold",
    "Trials",
    "choose",
    "choose_within",
    "saving",
    "unserved",
]

# Plans within this fraction of the cheapest are "as good": the planner's costs are
# estimates, and a shorter or smaller index is worth a few percent.
TOLERANCE = 0.10
# The least planner cost an index must save a query (about two random page reads).
MIN_SAVING = 8.0
# A B-tree this many times the size of a BRIN index on the same column yields to it.
BRIN_SIZE_RATIO = 20


@dataclass
class Trials:
    """What the planner said: each query's cost as things are and with each candidate.

    ``after[c][i]`` is query ``i``'s cost when its plan reads candidate ``c`` (and is
    cheaper); ``used[c][i]`` the tables (partitions) on which it reads it.
    """

    queries: list[Query]
    origins: list[set[Candidate]]  # the candidates each query gave
    before: dict[int, float] = field(default_factory=dict)
    after: dict[Candidate, dict[int, float]] = field(default_factory=dict)
    used: dict[Candidate, dict[int, set[str]]] = field(default_factory=dict)
    sizes: dict[Candidate, int | None] = field(default_factory=dict)
    failed: dict[Candidate, str] = field(default_factory=dict)  # could not be tried: why

    def calls(self, i: int) -> int:
        """Return how often query ``i`` ran (1 when unknown)."""
        return self.queries[i].calls or 1


Threshold = Callable[[Candidate], float]


def _good(trials: Trials, threshold: Threshold) -> dict[Candidate, dict[int, float]]:
    """Return each candidate's costs for the queries it makes ``threshold`` times cheaper
    and at least :data:`MIN_SAVING` cheaper (a query that costs a page read or two is
    not worth an index, whatever the ratio)."""
    return {
        candidate: {
            i: cost
            for i, cost in costs.items()
            if trials.before[i] / max(cost, 0.01) >= threshold(candidate)
            and trials.before[i] - cost >= MIN_SAVING
        }
        for candidate, costs in trials.after.items()
    }


def _as_good(cost: float, best: float) -> bool:
    """Return whether ``cost`` is as good as ``best``: within :data:`TOLERANCE`, or less
    than :data:`MIN_SAVING` above it (no difference worth another index)."""
    return cost <= best * (1 + TOLERANCE) or cost - best < MIN_SAVING


def choose(trials: Trials, threshold: Threshold) -> list[tuple[Candidate, list[int]]]:
    """Pick the fewest, smallest indexes that give each query (nearly) its best plan.

    A query's best candidates are those within :data:`TOLERANCE` (or
    :data:`MIN_SAVING`) of the cheapest plan any candidate gives it; then, greedily,
    the candidate among the best for the most queries not yet served wins, ties going
    to fewer columns, then the smaller index, then the bigger saving.
    """
    good = _good(trials, threshold)
    _prefer_brin(trials, good)
    best: dict[int, float] = {}
    for costs in good.values():
        for i, cost in costs.items():
            best[i] = min(best.get(i, math.inf), cost)
    serves = {
        candidate: {i for i, cost in costs.items() if _as_good(cost, best[i])}
        for candidate, costs in good.items()
    }
    uncovered = set(best)
    chosen: list[tuple[Candidate, list[int]]] = []

    def rank(c: Candidate) -> tuple[int, int, float, float, str]:
        gained = serves[c] & uncovered
        gain = sum((trials.before[i] - good[c][i]) * trials.calls(i) for i in gained)
        size = trials.sizes.get(c)
        return (-len(gained), len(c.keys), math.inf if size is None else size, -gain, c.shape)

    while uncovered:
        options = [c for c in serves if serves[c] & uncovered]
        if not options:
            break
        pick = min(options, key=rank)
        served = sorted(serves[pick] & uncovered)
        chosen.append((pick, served))
        uncovered -= set(served)
    return chosen


def _prefer_brin(trials: Trials, good: dict[Candidate, dict[int, float]]) -> None:
    """Let a BRIN index take the queries of a far larger B-tree on the same column.

    On a large table in the column's order (the only place BRIN is tried), a B-tree
    plans range scans cheaper still, but at :data:`BRIN_SIZE_RATIO` times the size and
    write work; a BRIN index that already makes the query ``min_factor`` times cheaper
    is the better trade.
    """
    for brin, gained in good.items():
        brin_size = trials.sizes.get(brin)
        if brin.using != "brin" or not gained or not brin_size:
            continue
        for btree, costs in good.items():
            size = trials.sizes.get(btree)
            same = btree.using == "btree" and btree.keys == brin.keys and btree.predicate is None
            if same and size is not None and size > BRIN_SIZE_RATIO * brin_size:
                for i in gained:
                    costs.pop(i, None)


def unserved(
    trials: Trials, served: set[int], threshold: Threshold, max_size_bytes: int | None = None
) -> list[SkippedQuery]:
    """Return why each planned query that no recommendation serves got none."""
    found = []
    good = _good(trials, threshold)
    for i, cost in sorted(trials.before.items()):
        if i in served:
            continue
        if max_size_bytes is not None and any(i in costs for costs in good.values()):
            reason = (
                "an index would serve it, but the ones kept within max_size_bytes "
                f"({format_size(max_size_bytes)}) save more per byte"
            )
            found.append(SkippedQuery(trials.queries[i].sql, reason))
            continue
        options = [(c, costs[i]) for c, costs in trials.after.items() if i in costs]
        untried = [c for c in trials.failed if c in trials.origins[i]]
        if not options and untried:
            reason = f"its candidates could not be tried: {trials.failed[untried[0]]}"
        elif not options:
            reason = "no candidate index was read by its plan: it is as cheap as it gets"
        else:
            pick, best = min(options, key=lambda o: o[1])
            reason = (
                f"the best candidate, {pick.shape} on {pick.table}, plans it at {best:.1f} "
                f"against {cost:.1f} now: less than the {threshold(pick):g}x asked for"
            )
        found.append(SkippedQuery(trials.queries[i].sql, reason))
    return found


def saving(query: ServedQuery) -> float:
    """Return the planner cost a served query saves over all its calls."""
    return (query.cost_before - query.cost_after) * (query.calls or 1)


def choose_within(
    trials: Trials, threshold: Threshold, max_size_bytes: int, size: Callable[[Candidate], int]
) -> list[tuple[Candidate, list[int]]]:
    """Pick indexes within ``max_size_bytes``: each time, the one whose further saving
    (cost x calls, over the plans it improves) per byte is the highest and still fits.

    ``size`` gives a candidate's size. Each query goes to the picked index that plans
    it cheapest.
    """
    good = _good(trials, threshold)
    _prefer_brin(trials, good)

    def greedy(seed: Candidate | None) -> tuple[float, list[Candidate], dict[int, float]]:
        current = dict(trials.before)
        picked: list[Candidate] = []
        room = max_size_bytes

        def further(c: Candidate) -> float:
            return sum(
                (current[i] - cost) * trials.calls(i)
                for i, cost in good[c].items()
                if cost < current[i]
            )

        while True:
            if seed is not None and not picked:
                options = [(1.0, seed)] if size(seed) <= room else []
            else:
                options = [(further(c) / max(size(c), 1), c) for c in good if c not in picked]
                options = [(value, c) for value, c in options if value > 0 and size(c) <= room]
            if not options:
                break
            _, pick = max(options, key=lambda o: (o[0], o[1].shape))
            picked.append(pick)
            room -= size(pick)
            for i, cost in good[pick].items():
                current[i] = min(current[i], cost)
        saved = sum((trials.before[i] - current[i]) * trials.calls(i) for i in current)
        return saved, picked, current

    # Saving per byte alone can fill the budget with small wins and leave no room for
    # a big one: so each candidate is also tried as the first pick, and the best
    # total saving wins (the usual repair of the greedy knapsack).
    seeds: list[Candidate | None] = [None, *[c for c in good if good[c]]]
    _, picked, current = max((greedy(seed) for seed in seeds), key=lambda r: r[0])
    chosen = []
    for candidate in picked:
        served = [
            i for i, cost in sorted(good[candidate].items())
            if cost == current[i]
            and all(good[c].get(i) != cost for c in picked[: picked.index(candidate)])
        ]  # fmt: skip
        if served:
            chosen.append((candidate, served))
    return chosen
