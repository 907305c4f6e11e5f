"""Bayesian-network structure learning (DAG-GFlowNet, Deleu et al. 2022) as a GFlowNet task.

Objects are DAGs G on d nodes; the target is the posterior P(G | D) ∝ P(D | G)·P(G).

States
    Long ``[B, 2·d·d]``: the adjacency A (entries ``0 .. d²−1``, row-major, A[i, j] = 1 iff the edge
    i → j is present) followed by its strict transitive closure C (C[i, j] = 1 iff there is a directed
    path i ⇝ j of length ≥ 1). s0 is the empty graph. Every DAG is a terminal object.
Forward actions
    a = i·d + j (a < d²) adds i → j. It is legal iff A[i, j] = 0, i ≠ j and C[j, i] = 0 (no path
    j ⇝ i, so no cycle is closed). Action d² is exit, legal in every state. Adding i → j updates the
    closure incrementally with one gather and one outer product over the batch:
    C' = C ∨ (anc(i) ⊗ desc(j)), anc(i) = {i} ∪ {k : C[k, i]}, desc(j) = {j} ∪ {k : C[j, k]}.
Backward actions
    b = i·d + j removes i → j (legal iff A[i, j] = 1). The closure is then recomputed by
    ⌈log₂(d − 1)⌉ batched squarings C ← min(1, C + C·C) starting from C = A (float32, exact
    since entries stay ≤ d).
Observation
    Float ``[A, C]`` (2·d² entries): the graph and the reachability the mask depends on.
Reward
    log R(G) = score(G) − score(G_∅) + log P(G) − log P(G_∅), with the decomposable score of
    :mod:`gfn_envs.tasks.bge` (BGe by default, α_μ = 1, α_w = d + 2, T = t·I) and the structure prior
    ``"uniform"`` (log P(G) = 0) or ``"edge"`` (log P(G) = −edge_penalty·|E(G)|). Relative to the
    empty graph, as in the paper's code. float64, because posteriors are peaked (hundreds of nats).
Data
    Either given, or drawn by :func:`sample_linear_gaussian` with ``numpy.random.default_rng(seed)``:
    an Erdős–Rényi DAG with ``expected_edges`` expected edges on a random node order, weights
    N(0, 1), Gaussian noise with standard deviation ``noise_std`` (0.1, the value the paper's code
    effectively uses), ``num_samples`` samples (100).
Enumeration (d ≤ 5)
    All DAGs (1, 3, 25, 543, 29,281 for d = 1..5), by edge count, then by the bit code of the
    off-diagonal adjacency entries; ``state_index`` is one lookup in a table over those d(d − 1) bits
    (2^20 entries for d = 5). :mod:`gfn_envs.exact` then gives the exact posterior and the exact
    distribution of any sampler.
Guide (RL-G, paper section 2.7)
    P_F with the exit probability capped at 1e−10 (then renormalised) in graphs with
    log R(G) ≤ threshold. The paper's code
    hard-codes 75 nats; here the default threshold is the ``guide_quantile`` quantile (0.75, the
    fraction of states the 2-D HyperGrid guide caps) of the log-rewards of a reference set of graphs:
    all DAGs when d ≤ 5, else 4,096 Erdős–Rényi DAGs with the data's expected edge count (seed 0).
Valid states (:meth:`BayesNet.validate_states`)
    0/1 entries, no self-loop, an acyclic adjacency, and the closure equal to the one recomputed
    from the adjacency (:meth:`BayesNet.states_from_adjacency` builds valid states).
Metrics
    In :mod:`gfn_envs.metrics.graphs`: exact metrics (TV, JSD, edge-marginal errors, expected SHD
    for d ≤ 5) and sampled metrics (expected SHD to the true graph, edge-marginal AUROC, distinct
    graphs) for any d.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from gfn_envs.guides import ExitCapGuide
from gfn_envs.task import Task
from gfn_envs.tasks.bge import DecomposableScore, make_score

PRIORS = ("uniform", "edge")
MAX_ENUMERABLE_NODES = 5
MAX_NODES = 32


@dataclass(frozen=True)
class LinearGaussianData:
    """A sampled data set with the graph and weights that generated it."""

    data: np.ndarray
    graph: np.ndarray
    weights: np.ndarray


def sample_linear_gaussian(
    num_nodes: int,
    num_samples: int = 100,
    expected_edges: float | None = None,
    noise_std: float = 0.1,
    seed: int = 0,
) -> LinearGaussianData:
    """Erdős–Rényi DAG and linear-Gaussian samples, deterministic given ``seed``.

    A random node order is drawn; each of the d(d−1)/2 ordered pairs gets an edge with probability
    p = expected_edges / (d(d−1)/2) (default expected_edges = d), with weight N(0, 1). Samples follow
    X_j = Σ_{i ∈ Pa(j)} w_ij X_i + ε_j, ε_j ~ N(0, noise_std²), with no intercept.
    """
    d = num_nodes
    pairs = d * (d - 1) // 2
    if expected_edges is None:
        expected_edges = float(min(d, pairs))
    if not isinstance(expected_edges, (int, float)) or not 0 <= expected_edges <= pairs:
        raise ValueError(
            f"expected_edges must be a number in [0, num_nodes·(num_nodes−1)/2 = {pairs}], "
            f"got {expected_edges!r}"
        )
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer >= 2, got {num_samples!r}")
    if not isinstance(noise_std, (int, float)) or not math.isfinite(noise_std) or noise_std <= 0:
        raise ValueError(f"noise_std must be a finite number > 0, got {noise_std!r}")
    rng = np.random.default_rng(seed)
    p = expected_edges / pairs if pairs else 0.0
    order = rng.permutation(d)
    upper = np.triu(rng.random((d, d)) < p, k=1)
    graph = np.zeros((d, d), dtype=np.int64)
    graph[np.ix_(order, order)] = upper
    weights = rng.normal(0.0, 1.0, size=(d, d)) * graph
    data = np.zeros((num_samples, d))
    for node in order:
        data[:, node] = data @ weights[:, node] + rng.normal(0.0, noise_std, size=num_samples)
    return LinearGaussianData(data=data, graph=graph, weights=weights)


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be an integer <= {high}, got {value!r}")
    return value


class BayesNet(Task):
    """DAG structure learning. See the module docstring for the MDP, the reward and the data.

    Args:
        num_nodes: d, the number of variables (1 ≤ d ≤ 32; exact metrics for d ≤ 5). Default 5,
            or the column count of ``data`` / the score object when one is given.
        data: observations ``[N, d]``; when None they are generated (see below).
        true_graph: ``[d, d]`` 0/1 adjacency of the graph behind ``data``, for the SHD / AUROC
            metrics (only with ``data``; generated data bring their own).
        num_samples: N of the generated data (default 100).
        expected_edges: expected edge count of the generated graph (default d).
        noise_std: noise standard deviation of the generated data (default 0.1).
        seed: seed of ``numpy.random.default_rng`` for the generated data (default 0).
        score: ``"bge"`` (default), ``"bic"``, or a :class:`~gfn_envs.tasks.bge.DecomposableScore`
            built on the data (then ``data`` and the generator kwargs must be left unset).
        alpha_mu, alpha_w: BGe hyperparameters (defaults 1 and d + 2).
        prior: ``"uniform"`` (default) or ``"edge"`` (log P(G) = −edge_penalty·|E|).
        edge_penalty: nats per edge of the ``"edge"`` prior (default 1).
        guide_threshold: log-reward at or below which the RL-G guide caps exit; None (default)
            derives it from the data through ``guide_quantile``.
        guide_quantile: quantile in [0, 1] of reference log-rewards used when ``guide_threshold``
            is None (default 0.75).
        device: torch device of the states.
    """

    def __init__(
        self,
        num_nodes: int | None = None,
        data: ArrayLike | None = None,
        true_graph: ArrayLike | None = None,
        num_samples: int | None = None,
        expected_edges: float | None = None,
        noise_std: float | None = None,
        seed: int | None = None,
        score: str | DecomposableScore = "bge",
        alpha_mu: float = 1.0,
        alpha_w: float | None = None,
        prior: str = "uniform",
        edge_penalty: float = 1.0,
        guide_threshold: float | None = None,
        guide_quantile: float = 0.75,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(device)
        if num_nodes is None:
            if isinstance(score, DecomposableScore):
                num_nodes = score.num_nodes
            elif data is not None:
                num_nodes = int(np.shape(data)[1]) if np.ndim(data) == 2 else 5
            else:
                num_nodes = 5
        d = _check_int("num_nodes", num_nodes, 1, MAX_NODES)
        generator_kwargs = {
            "num_samples": num_samples,
            "expected_edges": expected_edges,
            "noise_std": noise_std,
            "seed": seed,
        }
        given = [k for k, v in generator_kwargs.items() if v is not None]
        self.true_graph: Tensor | None = None
        self.weights: np.ndarray | None = None
        if isinstance(score, DecomposableScore) or data is not None:
            if given:
                raise ValueError(
                    f"{', '.join(given)} configure generated data; leave them unset when data or a "
                    "score object is given"
                )
            if isinstance(score, DecomposableScore) and data is not None:
                raise ValueError("give either data or a DecomposableScore as score, not both")
            if true_graph is not None:
                graph = np.asarray(true_graph)
                if graph.shape != (d, d) or not np.isin(graph, (0, 1)).all():
                    raise ValueError(f"true_graph must be a 0/1 array of shape [{d}, {d}]")
                self.true_graph = torch.as_tensor(graph.astype(np.int64), device=self.device)
        else:
            if true_graph is not None:
                raise ValueError("true_graph is only accepted together with data")
            generated = sample_linear_gaussian(
                d,
                num_samples=100 if num_samples is None else num_samples,
                expected_edges=expected_edges,
                noise_std=0.1 if noise_std is None else noise_std,
                seed=0 if seed is None else seed,
            )
            data = generated.data
            self.true_graph = torch.as_tensor(generated.graph, device=self.device)
            self.weights = generated.weights
        self.score = make_score(score, data, alpha_mu=alpha_mu, alpha_w=alpha_w)
        if self.score.num_nodes != d:
            raise ValueError(
                f"the data have {self.score.num_nodes} columns but num_nodes is {num_nodes}"
            )
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        if not isinstance(edge_penalty, (int, float)) or not math.isfinite(edge_penalty):
            raise ValueError(f"edge_penalty must be a finite number, got {edge_penalty!r}")
        if guide_threshold is not None and (
            not isinstance(guide_threshold, (int, float)) or not math.isfinite(guide_threshold)
        ):
            raise ValueError(
                f"guide_threshold must be a finite number or None, got {guide_threshold!r}"
            )
        if not isinstance(guide_quantile, (int, float)) or not 0.0 <= guide_quantile <= 1.0:
            raise ValueError(f"guide_quantile must be a number in [0, 1], got {guide_quantile!r}")
        self.num_nodes = d
        self.prior, self.edge_penalty = prior, float(edge_penalty)
        self.guide_threshold, self.guide_quantile = guide_threshold, float(guide_quantile)
        self.expected_edges = expected_edges
        self.state_shape = (2 * d * d,)
        self.n_actions = d * d + 1
        self.n_backward_actions = d * d
        self.obs_dim = 2 * d * d
        self.max_length = d * (d - 1) // 2 + 1
        self._eye = torch.eye(d, dtype=torch.bool, device=self.device)
        self._squarings = math.ceil(math.log2(d - 1)) if d > 2 else 1
        self._empty_score = float(
            self.score.graph_scores(torch.zeros(1, d, d, dtype=torch.long))[0]
        )
        self._index_table: Tensor | None = None

    # ----------------------------------------------------------------- structure
    def _split(self, states: Tensor) -> tuple[Tensor, Tensor]:
        """Adjacency and closure views ``[B, d, d]`` of ``states``."""
        d, dd = self.num_nodes, self.num_nodes * self.num_nodes
        return states[:, :dd].view(-1, d, d), states[:, dd:].view(-1, d, d)

    def adjacency(self, states: Tensor) -> Tensor:
        """Long ``[B, d, d]``: the adjacency matrices of ``states`` (A[i, j] = 1 iff i → j)."""
        return self._split(states)[0]

    def validate_states(self, states: Any, name: str = "states") -> Tensor:
        """:meth:`Task.validate_states`, plus: 0/1 entries, no self-loop, an acyclic graph, and
        the closure half equal to the strict transitive closure of the adjacency half."""
        states = super().validate_states(states, name)
        d = self.num_nodes

        def refuse(rows: Tensor, problem: str) -> None:
            if bool(rows.any()):
                row = states[rows][0]
                raise ValueError(
                    f"{name} {problem}; got adjacency {row[: d * d].view(d, d).tolist()} and "
                    f"closure {row[d * d :].view(d, d).tolist()} (build states with "
                    "states_from_adjacency)"
                )

        refuse(((states != 0) & (states != 1)).any(dim=1), "must hold 0/1 entries only")
        adjacency, closure = self._split(states)
        refuse(adjacency.diagonal(dim1=1, dim2=2).any(dim=1), "must have no self-loop i → i")
        reach = self.closure(adjacency)
        refuse(_cyclic(adjacency, reach), "must be acyclic (a cycle was found)")
        refuse(
            (reach != closure).flatten(1).any(dim=1), "has a closure that does not match its edges"
        )
        return states

    def s0(self, batch_size: int) -> Tensor:
        return torch.zeros(batch_size, *self.state_shape, dtype=torch.long, device=self.device)

    def forward_mask(self, states: Tensor) -> Tensor:
        adjacency, closure = self._split(states)
        blocked = adjacency.bool() | closure.transpose(1, 2).bool() | self._eye
        can_exit = torch.ones(len(states), 1, dtype=torch.bool, device=states.device)
        return torch.cat([~blocked.flatten(1), can_exit], dim=1)

    def backward_mask(self, states: Tensor) -> Tensor:
        return states[:, : self.num_nodes * self.num_nodes].bool()

    def is_terminal(self, states: Tensor) -> Tensor:
        return torch.ones(len(states), dtype=torch.bool, device=states.device)

    def step(self, states: Tensor, actions: Tensor) -> Tensor:
        d, dd = self.num_nodes, self.num_nodes * self.num_nodes
        closure = states[:, dd:].view(-1, d, d)
        i, j = actions // d, actions % d
        ancestors = closure.gather(2, i.view(-1, 1, 1).expand(-1, d, 1)).squeeze(2).bool()
        descendants = closure.gather(1, j.view(-1, 1, 1).expand(-1, 1, d)).squeeze(1).bool()
        ancestors, descendants = ancestors | self._eye[i], descendants | self._eye[j]
        children = states.clone()
        children[:, dd:].bitwise_or_((ancestors.unsqueeze(2) & descendants.unsqueeze(1)).flatten(1))
        return children.scatter_(1, actions.unsqueeze(1), 1)

    def backward_step(self, states: Tensor, actions: Tensor) -> Tensor:
        dd = self.num_nodes * self.num_nodes
        adjacency = states[:, :dd].scatter(1, actions.unsqueeze(1), 0)
        return torch.cat([adjacency, self.closure(adjacency).flatten(1)], dim=1)

    def closure(self, adjacency: Tensor) -> Tensor:
        """Strict transitive closure, long ``[B, d, d]``, of flat or square adjacencies."""
        d = self.num_nodes
        reach = adjacency.reshape(-1, d, d).float()
        for _ in range(self._squarings):
            reach = torch.baddbmm(reach, reach, reach).clamp_(max=1.0)
        return reach.long()

    def backward_action(self, states: Tensor, actions: Tensor) -> Tensor:
        return actions

    def forward_action(self, states: Tensor, actions: Tensor) -> Tensor:
        return actions

    def states_from_adjacency(self, adjacency: ArrayLike | Tensor) -> Tensor:
        """States (adjacency and closure) of 0/1 adjacencies ``[B, d, d]``; raises on cycles."""
        d = self.num_nodes
        adjacency = torch.as_tensor(adjacency, device=self.device).long().reshape(-1, d, d)
        if bool(((adjacency != 0) & (adjacency != 1)).any()):
            raise ValueError("adjacency must hold 0/1 entries")
        closure = self.closure(adjacency)
        if bool(_cyclic(adjacency, closure).any()):
            raise ValueError("adjacency must be acyclic")
        return torch.cat([adjacency.flatten(1), closure.flatten(1)], dim=1)

    # ------------------------------------------------------------------- reward
    def log_reward(self, states: Tensor) -> Tensor:
        """log R(G) relative to the empty graph, float64 ``[B]``."""
        adjacency, _ = self._split(states)
        log_r = self.score.graph_scores(adjacency) - self._empty_score
        if self.prior == "edge":
            log_r = log_r - self.edge_penalty * adjacency.sum(dim=(1, 2)).cpu().double()
        return log_r.to(states.device)

    def encode(self, states: Tensor) -> Tensor:
        return states.float()

    def default_guide(self, threshold: float | None = None) -> ExitCapGuide:
        """P_F with exit capped at log 1e−10 where log R(G) ≤ threshold (paper section 2.7).

        ``threshold`` defaults to ``guide_threshold``, else to the data-derived quantile described in
        the module docstring (:meth:`reference_log_rewards`).
        """
        if threshold is None:
            threshold = self.guide_threshold
        if threshold is None:
            threshold = float(torch.quantile(self.reference_log_rewards(), self.guide_quantile))
        return ExitCapGuide(self, threshold=threshold, cap=math.log(1e-10))

    def reference_log_rewards(self, n: int = 4096) -> Tensor:
        """Log-rewards of all DAGs (d ≤ 5), else of ``n`` seeded Erdős–Rényi DAGs, float64."""
        if self.enumerable:
            return self._enumerate()["log_rewards"]
        d = self.num_nodes
        pairs = d * (d - 1) // 2
        expected = self.expected_edges if self.expected_edges is not None else min(d, pairs)
        rng = np.random.default_rng(0)
        keys = rng.random((n, d))
        order = np.argsort(keys, axis=1)
        rank = np.argsort(order, axis=1)
        edges = (rng.random((n, d, d)) < expected / pairs) & (rank[:, :, None] < rank[:, None, :])
        return self.log_reward(self.states_from_adjacency(edges.astype(np.int64)))

    # --------------------------------------------------------------- enumeration
    @property
    def enumerable(self) -> bool:
        return self.num_nodes <= MAX_ENUMERABLE_NODES

    def _codes(self, states: Tensor) -> Tensor:
        """Bit code of the off-diagonal adjacency entries (row-major order), long ``[B]``."""
        d = self.num_nodes
        off = ~self._eye.flatten()
        bits = states[:, : d * d][:, off]
        powers = torch.ones(d * (d - 1), dtype=torch.long, device=states.device) << torch.arange(
            d * (d - 1), device=states.device
        )
        return (bits * powers).sum(dim=1)

    def all_states(self) -> Tensor:
        """All DAGs by edge count, then by off-diagonal bit code (a topological order)."""
        if not self.enumerable:
            raise NotImplementedError(
                f"BayesNet enumerates only num_nodes <= {MAX_ENUMERABLE_NODES}, got {self.num_nodes}"
            )
        cached = getattr(self, "_all_states", None)
        if cached is not None:
            return cached
        levels = [self.s0(1)]
        while True:
            parents = levels[-1]
            mask = self.forward_mask(parents)[:, : self.exit_action]
            src, act = mask.nonzero(as_tuple=True)
            if len(src) == 0:
                break
            children = self.step(parents[src], act)
            codes, first = _unique_first(self._codes(children))
            levels.append(children[first])
        states = torch.cat(levels)
        table = torch.full((1 << (self.num_nodes * (self.num_nodes - 1)),), -1, dtype=torch.long)
        table[self._codes(states).cpu()] = torch.arange(len(states))
        self._index_table = table.to(self.device)
        self._all_states = states
        return states

    def state_index(self, states: Tensor) -> Tensor:
        if self._index_table is None:
            self.all_states()
        assert self._index_table is not None
        index = self._index_table[self._codes(states)]
        if bool((index < 0).any()):
            raise ValueError("states contain a graph that is not a DAG")
        return index


def _cyclic(adjacency: Tensor, reach: Tensor) -> Tensor:
    """Bool ``[B]``: graphs with a directed cycle. ``reach`` holds the paths of length 1 … d − 1
    (:meth:`BayesNet.closure`); every cycle contains a simple one, a path i ⇝ j of at most d − 1
    edges closed by an edge j → i."""
    return (reach.bool() & adjacency.transpose(1, 2).bool()).flatten(1).any(dim=1)


def _unique_first(codes: Tensor) -> tuple[Tensor, Tensor]:
    """Sorted unique ``codes`` and the position of one occurrence of each."""
    unique, inverse = torch.unique(codes, return_inverse=True)
    first = torch.empty(len(unique), dtype=torch.long, device=codes.device)
    first.scatter_(0, inverse, torch.arange(len(codes), device=codes.device))
    return unique, first
