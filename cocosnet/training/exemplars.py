"""Training exemplar choice (CoCosNet): hard / top-1 retrieval or a self-reference.

For each training query the official recipe uses, with the default probabilities,

* ``"hard"`` (``p_hard`` = 0.2): the last-ranked retrieved exemplar (highest rank, refK);
* ``"top1"`` (``p_top1`` = 0.5): the rank-1 exemplar (ref1);
* ``"self"`` (``p_self`` = 0.3): the query image itself; the pseudo pair is made later from an
  independent crop and flip of it (cocosnet.training.data).

A query without any pairs always gets ``"self"``.  Each :meth:`ExemplarSampler.choose` call
draws exactly one uniform number from the generator, whether or not the query has pairs, so a
seeded stream gives the same choices regardless of which queries lack pairs.  When a query has
only one exemplar, ``"hard"`` and ``"top1"`` return the same id (the kind still says which
branch was drawn).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np


class ExemplarSampler:
    """Choose an exemplar per query from validated pair rows (see the module docstring)."""

    def __init__(
        self,
        pairs_rows: Iterable[Mapping],
        *,
        p_hard: float = 0.2,
        p_top1: float = 0.5,
        p_self: float = 0.3,
        seed: int = 0,
    ) -> None:
        probs = {"p_hard": p_hard, "p_top1": p_top1, "p_self": p_self}
        text = ", ".join(f"{k}={v!r}" for k, v in probs.items())
        for name, value in probs.items():
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(
                    f"exemplar probability {name} must be a finite number >= 0 ({text})"
                )
        total = p_hard + p_top1 + p_self
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"exemplar probabilities p_hard + p_top1 + p_self must sum to 1 "
                f"({text}; sum {total!r})"
            )
        self.probabilities = {"hard": float(p_hard), "top1": float(p_top1), "self": float(p_self)}
        self._cum_hard = float(p_hard)
        self._cum_top1 = float(p_hard) + float(p_top1)
        rows = list(pairs_rows)  # validated where they were read (data.pairs.read_pairs)
        best: dict[str, tuple[int, str]] = {}
        worst: dict[str, tuple[int, str]] = {}
        for row in rows:
            query, rank, exemplar = row["query"], row["rank"], row["exemplar"]
            if query not in best or rank < best[query][0]:
                best[query] = (rank, exemplar)
            if query not in worst or rank > worst[query][0]:
                worst[query] = (rank, exemplar)
        self._top1 = {q: e for q, (_, e) in best.items()}
        self._hard = {q: e for q, (_, e) in worst.items()}
        self.rng = np.random.default_rng(seed)

    def __contains__(self, query_id: str) -> bool:
        """Whether ``query_id`` has any pairs."""
        return query_id in self._top1

    def top1(self, query_id: str) -> str | None:
        """The rank-1 exemplar of ``query_id`` (None without pairs)."""
        return self._top1.get(query_id)

    def hard(self, query_id: str) -> str | None:
        """The last-ranked exemplar of ``query_id`` (None without pairs)."""
        return self._hard.get(query_id)

    def choose(self, query_id: str, rng: np.random.Generator | None = None) -> tuple[str, str]:
        """Return ``(exemplar_id, kind)``, kind in ``("top1", "hard", "self")``.

        ``rng`` defaults to the sampler's own generator (seeded by ``seed``).
        """
        rng = self.rng if rng is None else rng
        u = float(rng.random())
        if query_id not in self._top1:
            return query_id, "self"
        if u < self._cum_hard:
            return self._hard[query_id], "hard"
        if u < self._cum_top1 or self.probabilities["self"] == 0.0:
            return self._top1[query_id], "top1"
        return query_id, "self"
