"""The replay-buffer "substructure" guide of sequence tasks (paper section 2.7; Shen et al. 2023).

RL-G evaluates P_G on the forward transitions s → s' of trajectories sampled *backwards* from a
terminal sequence x. The guide keeps a buffer of every terminal sequence it is shown
(:meth:`SubstructureGuide.observe`, a multiset, FIFO beyond ``capacity``) with its reward R (not
log R), and scores a child s' of s by

    score(s') = mean R of the buffer sequences that contain the substructure s'  (0 if none),

then normalises over the *candidate* children, the children of s that are still ancestors of x:

    P_G(a | s, x) = score(step(s, a)) / Σ_{a' candidate} score(step(s, a')),   a candidate,
    P_G(a | s, x) = 0 otherwise (log floored at −1e5, as in the paper's code),
    P_G(exit | x) = 1 at a full sequence.

"Contains the substructure" depends on the MDP, and so does the scoring: each MDP has its own
class (:class:`FillSubstructures`, :class:`PendSubstructures`), which the guide picks from the task's
:attr:`~gfn_envs.tasks.sequence.SequenceTask.generation`:

* ``fill``: the buffer sequence agrees with s' on every filled slot of s'. The candidates of s are
  the L − |s| actions that write x_p at an empty position p.
* ``prepend_append``: the word s' is a contiguous substring of the buffer sequence (anywhere). The
  candidates are the append/prepend actions whose result is still a substring of x (at the empty
  word both "append c" and "prepend c" are candidates for every symbol c of x, and share its mass).

Since x itself is in the buffer once observed, the true child always scores > 0. If no candidate
scores > 0 (x was never observed and nothing in the buffer agrees), P_G is uniform over the
candidates; the paper's code instead reuses the sampler's own log-prob there, which the guide
cannot see.

Vectorisation (no Python loop over transitions or buffer entries):

* ``method="dense"`` (default when the MDP has at most ``task.max_enumerable_states`` states, e.g.
  TFBind8): two float64 tables over all states hold Σ count and Σ R of the buffer entries that
  contain each substructure. ``observe`` adds each new sequence to the 2^L partial sequences it
  agrees with (fill) or to its distinct substrings (prepend/append) with one ``index_add_``, and
  eviction subtracts; scoring is one table lookup per candidate child.
* ``method="sparse"`` (larger spaces): the buffer is reduced to distinct sequences when it
  changed. Fill: for each distinct object x of the batch, the agreement mask m_b ⊆ {0..L−1} of
  every buffer sequence b with x is histogrammed over 2^L bins and turned into superset sums
  g(S) = Σ_{b: m_b ⊇ S} w_b by a zeta transform (L ≤ 20). Prepend/append: the distinct substrings
  of all buffer sequences are aggregated into a sorted key table searched with ``searchsorted``
  (K^L < 2^62).

Rewards enter as R·e^{−c} for one running constant c (the largest log-reward seen, updated with a
rescale of the tables), which leaves every mean ratio unchanged and keeps exp() finite.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gfn_envs.task import Task
from gfn_envs.tasks.sequence_mdp import INT64_SAFE, FillMDP, PrependAppendMDP, SequenceMDP

METHODS = ("auto", "dense", "sparse")
LOG_FLOOR = -1e5
_RESCALE_MARGIN = 30.0

Lookup = Callable[[Tensor], tuple[Tensor, Tensor]]
"""Maps table keys (any shape) to the count and Σ R·e^{−c} of the buffer entries holding them."""

Buffer = Callable[[], tuple[Tensor, Tensor, Tensor]]
"""Returns the distinct buffer sequences with their counts and Σ R·e^{−c}."""


class Substructures(ABC):
    """What "contains the substructure" means in one generation MDP, and which children of a state
    are candidates on the way to an object (see the module docstring).

    Args:
        mdp: the task's generation MDP.
        method: ``"dense"`` or ``"sparse"`` (validated against the MDP's limits).
    """

    def __init__(self, mdp: SequenceMDP, method: str) -> None:
        self.mdp, self.method = mdp, method

    @abstractmethod
    def keys(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Table keys ``[B, S]`` of every substructure each full row of ``rows`` contains (keys are
        state indices of the MDP's enumeration space), and a mask of the distinct ones per row."""

    @abstractmethod
    def scores(
        self, states: Tensor, objects: Tensor, lookup: Lookup, buffer: Buffer
    ) -> tuple[Tensor, Tensor]:
        """Scores ``[N, n_actions − 1]`` (float64, 0 off the candidates) of the non-exit actions
        at ``states`` on the way to ``objects``, and the bool candidate mask."""


class FillSubstructures(Substructures):
    """Fill MDP: a buffer sequence contains s' when it agrees with s' on every filled slot.

    Dense keys are the fill codes (:meth:`~gfn_envs.tasks.sequence_mdp.FillMDP.code`) of the 2^L
    partial sequences of a row; the sparse method counts superset sums over agreement masks
    (L ≤ 20). The candidates of s are the L − |s| actions that write x_p at an empty position p.
    """

    mdp: FillMDP

    def __init__(self, mdp: SequenceMDP, method: str) -> None:
        super().__init__(mdp, method)
        L, K = mdp.length, mdp.n_symbols
        if method == "sparse" and L > 20:
            raise ValueError(f"method='sparse' with mdp='fill' supports length <= 20, got {L}")
        device = mdp.device
        self._weights = (K + 1) ** torch.arange(L - 1, -1, -1, device=device)
        if method == "dense":
            subsets = torch.arange(2**L, device=device)
            self._subset_bits = (
                (subsets.unsqueeze(1) >> torch.arange(L, device=device)) & 1
            ).bool()

    def keys(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        digits = (rows.unsqueeze(1) + 1) * self._subset_bits
        keys = (digits * self._weights).sum(dim=2)
        return keys, torch.ones_like(keys, dtype=torch.bool)

    def scores(
        self, states: Tensor, objects: Tensor, lookup: Lookup, buffer: Buffer
    ) -> tuple[Tensor, Tensor]:
        K, L = self.mdp.n_symbols, self.mdp.length
        empty = states < 0
        if self.method == "dense":
            keys = self.mdp.code(states).unsqueeze(1) + (objects + 1) * self._weights
            count, rsum = lookup(torch.where(empty, keys, 0))
        else:
            count, rsum = self._superset_counts(states, objects, *buffer())
        position_score = torch.where(empty & (count > 0.5), rsum / count.clamp(min=1.0), 0.0)
        scores = torch.zeros(len(states), K, L, dtype=torch.float64, device=states.device)
        candidate = torch.zeros(len(states), K, L, dtype=torch.bool, device=states.device)
        index = objects.unsqueeze(1)
        scores.scatter_(1, index, position_score.unsqueeze(1))
        candidate.scatter_(1, index, empty.unsqueeze(1))
        return scores.flatten(1), candidate.flatten(1)

    def _superset_counts(
        self, states: Tensor, objects: Tensor, rows: Tensor, count: Tensor, rsum: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Count and Σ R of buffer sequences agreeing with each candidate child, ``[N, L]`` each,
        by superset sums over agreement masks (one 2^L histogram per distinct object)."""
        L = self.mdp.length
        n = len(states)
        out_count = torch.zeros(n, L, dtype=torch.float64, device=states.device)
        out_rsum = torch.zeros_like(out_count)
        if len(rows) == 0:
            return out_count, out_rsum
        bits = 1 << torch.arange(L, device=states.device)
        uniq, which = torch.unique(objects, dim=0, return_inverse=True)
        chunk = max(1, min(2**22 // (len(rows) * L), 2**22 // 2**L))
        bits_f = bits.to(torch.float32)
        filled = ((states >= 0).long() * bits).sum(dim=1)
        child = filled.unsqueeze(1) | bits
        for lo in range(0, len(uniq), chunk):
            block = uniq[lo : lo + chunk]
            agree = (rows.unsqueeze(0) == block.unsqueeze(1)).to(torch.float32)
            masks = (agree @ bits_f).long()  # exact: values < 2^21
            flat = masks + 2**L * torch.arange(len(block), device=masks.device).unsqueeze(1)
            flat = flat.flatten()
            hist_c = torch.bincount(flat, count.repeat(len(block)), minlength=len(block) * 2**L)
            hist_r = torch.bincount(flat, rsum.repeat(len(block)), minlength=len(block) * 2**L)
            g_c = _superset_sums(hist_c.view(len(block), 2**L), L)
            g_r = _superset_sums(hist_r.view(len(block), 2**L), L)
            sel = ((which >= lo) & (which < lo + len(block))).nonzero().squeeze(1)
            local = (which[sel] - lo).unsqueeze(1)
            out_count[sel] = g_c[local, child[sel]]
            out_rsum[sel] = g_r[local, child[sel]]
        return out_count, out_rsum


class PendSubstructures(Substructures):
    """Prepend/append MDP: a buffer sequence contains the word s' when s' is a contiguous
    substring of it (anywhere). Keys are the MDP's state indices of the distinct substrings
    (K^L < 2^62). The candidates are the append/prepend actions whose result is still a substring
    of x (at the empty word both "append c" and "prepend c" for every symbol c of x)."""

    mdp: PrependAppendMDP

    def __init__(self, mdp: SequenceMDP, method: str) -> None:
        super().__init__(mdp, method)
        K, L = mdp.n_symbols, mdp.length
        if K**L >= INT64_SAFE:
            raise ValueError(f"mdp='prepend_append' needs K^L < 2^62, got {K}^{L}")
        # place values K^{L−i} and the first state index of each word length
        self._place = K ** torch.arange(L, -1, -1, device=mdp.device)
        self._offsets = torch.cumsum(
            torch.cat([self._place.new_zeros(1), (K ** torch.arange(L, device=mdp.device))]), dim=0
        )

    def keys(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        L = self.mdp.length
        blocks = []
        for m in range(1, L + 1):
            windows = rows.unfold(1, m, 1)
            value = (windows * self._place[L - m + 1 :]).sum(dim=2)
            blocks.append(self._offsets[m] + value)
        keys = torch.cat(blocks, dim=1).sort(dim=1).values
        distinct = torch.ones_like(keys, dtype=torch.bool)
        distinct[:, 1:] = keys[:, 1:] != keys[:, :-1]
        return keys, distinct

    def scores(
        self, states: Tensor, objects: Tensor, lookup: Lookup, buffer: Buffer
    ) -> tuple[Tensor, Tensor]:
        K, L = self.mdp.n_symbols, self.mdp.length
        n = len(states)
        length = self.mdp.lengths(states)
        sentinel = torch.full((n, L), -2, dtype=torch.long, device=states.device)
        padded = torch.cat([objects, sentinel], dim=1)
        windows = padded.unfold(1, L, 1)
        match = ((windows == states.unsqueeze(1)) | (states < 0).unsqueeze(1)).all(dim=2)
        offsets = torch.arange(L + 1, device=states.device).unsqueeze(0)
        nxt = padded.gather(1, (offsets + length.unsqueeze(1)).clamp(max=2 * L - 1))
        prev = torch.cat([padded.new_full((n, 1), -2), objects], dim=1)
        can_append = match & (nxt >= 0)
        can_prepend = match & (prev >= 0)
        candidate = torch.zeros(n, 2 * K + 1, dtype=torch.bool, device=states.device)
        candidate.scatter_(1, torch.where(can_append, nxt, 2 * K), True)
        candidate.scatter_(1, torch.where(can_prepend, prev + K, 2 * K), True)
        candidate = candidate[:, : 2 * K]
        value = (states.clamp(min=0) * self._place[1:]).sum(dim=1) // self._place[length]
        symbols = torch.arange(K, device=states.device)
        append_value = value.unsqueeze(1) * K + symbols
        prepend_value = symbols * self._place[L - length].unsqueeze(1) + value.unsqueeze(1)
        child_len = (length + 1).clamp(max=L)
        keys = self._offsets[child_len].unsqueeze(1) + torch.cat([append_value, prepend_value], 1)
        count, rsum = lookup(torch.where(candidate, keys, 0))
        scores = torch.where(candidate & (count > 0.5), rsum / count.clamp(min=1.0), 0.0)
        return scores, candidate


class SubstructureGuide:
    """P_G of sequence tasks from a replay buffer of scored sequences; see the module docstring.

    Args:
        task: a :class:`~gfn_envs.tasks.sequence.SequenceTask` (either MDP).
        capacity: maximum number of buffer entries (≥ 1); the oldest are evicted first.
        method: ``"auto"``, ``"dense"`` or ``"sparse"`` (see the module docstring).
    """

    def __init__(self, task: Task, capacity: int = 1_000_000, method: str = "auto") -> None:
        generation = getattr(task, "generation", None)
        if not isinstance(generation, SequenceMDP):
            raise TypeError(f"task must be a SequenceTask, got {type(task).__name__}")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        n_states = generation.n_states
        if method == "auto":
            method = "dense" if n_states <= task.max_enumerable_states else "sparse"
        if method == "dense" and n_states > 50_000_000:
            raise ValueError(f"method='dense' needs a table of {n_states} states; use 'sparse'")
        kind = FillSubstructures if isinstance(generation, FillMDP) else PendSubstructures
        self.substructures: Substructures = kind(generation, method)
        self.task, self.capacity, self.method = task, capacity, method
        device = task.device
        self._rows = torch.empty(0, generation.length, dtype=torch.long, device=device)
        self._log_r = torch.empty(0, dtype=torch.float64, device=device)
        self._head = 0
        self._ref = -math.inf
        if method == "dense":
            self._count = torch.zeros(n_states, dtype=torch.float64, device=device)
            self._rsum = torch.zeros_like(self._count)
        self._sparse: dict[str, Tensor] | None = None

    # ----------------------------------------------------------------- buffer
    def state_dict(self) -> dict[str, Any]:
        """The buffer and its tables, so that agent checkpoints resume the guide exactly."""
        state: dict[str, Any] = {
            "rows": self._rows,
            "log_r": self._log_r,
            "head": self._head,
            "ref": self._ref,
        }
        if self.method == "dense":
            state |= {"count": self._count, "rsum": self._rsum}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s buffer (same task, capacity and method)."""
        device = self.task.device
        self._rows = state["rows"].to(device)
        self._log_r = state["log_r"].to(device)
        self._head, self._ref = int(state["head"]), float(state["ref"])
        if self.method == "dense":
            self._count.copy_(state["count"])
            self._rsum.copy_(state["rsum"])
        self._sparse = None

    def __len__(self) -> int:
        return len(self._rows)

    def observe(self, objects: Tensor, log_rewards: Tensor) -> None:
        """Append full sequences ``[B, L]`` with their log-rewards ``[B]`` to the buffer."""
        objects = self.task.validate_states(objects, "objects")
        log_rewards = torch.as_tensor(log_rewards, dtype=torch.float64, device=self.task.device)
        if log_rewards.shape != (len(objects),):
            raise ValueError(
                f"log_rewards must have shape [{len(objects)}], got {list(log_rewards.shape)}"
            )
        if bool((objects < 0).any() | (objects >= self.task.n_symbols).any()):
            raise ValueError("objects must be full sequences with symbols in [0, n_symbols)")
        if not bool(torch.isfinite(log_rewards).all()):
            raise ValueError("log_rewards must be finite")
        if len(objects) == 0:
            return
        objects, log_rewards = objects[-self.capacity :], log_rewards[-self.capacity :]
        top = float(log_rewards.max())
        if top > self._ref + _RESCALE_MARGIN or self._ref == -math.inf:
            if self.method == "dense" and self._ref > -math.inf:
                self._rsum *= math.exp(self._ref - top)
            self._ref = max(top, self._ref)
        n_free = self.capacity - len(self._rows)
        if n_free > 0:
            take = min(n_free, len(objects))
            self._rows = torch.cat([self._rows, objects[:take]])
            self._log_r = torch.cat([self._log_r, log_rewards[:take]])
            self._accumulate(objects[:take], log_rewards[:take], 1.0)
            objects, log_rewards = objects[take:], log_rewards[take:]
        if len(objects):
            slots = (self._head + torch.arange(len(objects), device=objects.device)) % self.capacity
            self._accumulate(self._rows[slots], self._log_r[slots], -1.0)
            self._rows[slots], self._log_r[slots] = objects, log_rewards
            self._accumulate(objects, log_rewards, 1.0)
            self._head = int((self._head + len(objects)) % self.capacity)
        self._sparse = None

    def _accumulate(self, rows: Tensor, log_r: Tensor, sign: float) -> None:
        """Dense method: add (sign = 1) or remove (−1) the contributions of ``rows``."""
        if self.method != "dense" or len(rows) == 0:
            return
        weight = (log_r - self._ref).exp()
        keys, valid = self.substructures.keys(rows)
        n_keys = keys.shape[1]
        keys = keys[valid]
        self._count.index_add_(0, keys, torch.full_like(keys, sign, dtype=torch.float64))
        self._rsum.index_add_(0, keys, (sign * weight).repeat_interleave(n_keys)[valid.flatten()])

    # ---------------------------------------------------------------- scoring
    def probs(self, states: Tensor, objects: Tensor) -> Tensor:
        """Float64 ``[N, n_actions]``: P_G(·|s, x) for each state ``states[i]`` on the way to
        ``objects[i]`` (rows of full states put mass 1 on exit)."""
        states = self.task.validate_states(states)
        objects = self.task.validate_states(objects, "objects")
        if len(states) != len(objects):
            raise ValueError(
                f"states and objects must have the same length, got {len(states)}, {len(objects)}"
            )
        scores, candidate = self.candidate_scores(states, objects)
        total = scores.sum(dim=1, keepdim=True)
        uniform = candidate.double() / candidate.sum(dim=1, keepdim=True).clamp(min=1)
        probs = torch.where(total > 0, scores / total.clamp(min=1e-300), uniform)
        full = self.task.is_terminal(states)
        exit_column = full.double().unsqueeze(1)
        return torch.cat([probs * (~full).unsqueeze(1), exit_column], dim=1)

    def log_prob(self, states: Tensor, actions: Tensor, log_pf: Tensor, objects: Tensor) -> Tensor:
        """log P_G(actions | states, objects), float32 ``[N]``, floored at −1e5; ``log_pf`` (the
        normalised log P_F at the parents) is unused."""
        probs = self.probs(states, objects)
        actions = torch.as_tensor(actions, dtype=torch.long, device=probs.device)
        chosen = probs.gather(1, actions.unsqueeze(1)).squeeze(1)
        return chosen.log().clamp(min=LOG_FLOOR).float()

    def candidate_scores(self, states: Tensor, objects: Tensor) -> tuple[Tensor, Tensor]:
        """Scores ``[N, n_actions − 1]`` (float64, 0 off the candidates) of the non-exit actions and
        the bool candidate mask (children that are still ancestors of x)."""
        return self.substructures.scores(states, objects, self._lookup, self._buffer_unique)

    def _lookup(self, keys: Tensor) -> tuple[Tensor, Tensor]:
        """Count and Σ R·e^{−c} of the buffer entries containing the substructures ``keys``: the
        dense tables, or the sorted key table of the sparse method."""
        if self.method == "dense":
            return self._count[keys], self._rsum[keys]
        self._buffer_unique()
        assert self._sparse is not None
        if "keys" not in self._sparse:
            rows, count, rsum = self._buffer_unique()
            all_keys, distinct = self.substructures.keys(rows)
            n_keys = all_keys.shape[1]
            table, slot = torch.unique(all_keys[distinct], return_inverse=True)
            flat = distinct.flatten()
            zeros = torch.zeros(len(table), dtype=torch.float64, device=keys.device)
            self._sparse["keys"] = table
            self._sparse["key_count"] = zeros.index_add(
                0, slot, count.repeat_interleave(n_keys)[flat]
            )
            self._sparse["key_rsum"] = zeros.index_add(
                0, slot, rsum.repeat_interleave(n_keys)[flat]
            )
        table = self._sparse["keys"]
        if len(table) == 0:
            empty = torch.zeros(keys.shape, dtype=torch.float64, device=keys.device)
            return empty, empty
        pos = torch.searchsorted(table, keys).clamp(max=len(table) - 1)
        hit = table[pos] == keys
        count = torch.where(hit, self._sparse["key_count"][pos], 0.0)
        return count, torch.where(hit, self._sparse["key_rsum"][pos], 0.0)

    def _buffer_unique(self) -> tuple[Tensor, Tensor, Tensor]:
        """Distinct buffer sequences with their counts and Σ R·e^{−c} (cached until observe)."""
        if self._sparse is None:
            rows, inverse = torch.unique(self._rows, dim=0, return_inverse=True)
            count = torch.zeros(len(rows), dtype=torch.float64, device=rows.device)
            count.index_add_(0, inverse, torch.ones_like(self._log_r))
            rsum = torch.zeros_like(count).index_add_(0, inverse, (self._log_r - self._ref).exp())
            self._sparse = {"rows": rows, "count": count, "rsum": rsum}
        s = self._sparse
        return s["rows"], s["count"], s["rsum"]


def _superset_sums(f: Tensor, n_bits: int) -> Tensor:
    """g(S) = Σ_{T ⊇ S} f(T) over the last dimension (2^n_bits subsets), batched over the first."""
    g = f.clone()
    batch = len(g)
    for bit in range(n_bits):
        view = g.view(batch, 2 ** (n_bits - bit - 1), 2, 2**bit)
        view[:, :, 0, :] += view[:, :, 1, :]
    return g
