"""Data-parallel training on torch.distributed: N ranks (processes started by ``torchrun``) act as
one agent whose batch is the concatenation of theirs.

**Joining.** An agent built in a process whose environment says ``WORLD_SIZE > 1`` (torchrun sets
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``) joins the default
process group, initialising it when none exists: gloo on the CPU, nccl with ``device="cuda"``, in
which case rank r uses ``cuda:LOCAL_RANK``. A single process never touches torch.distributed.

**Why averaging gradients gives the single-process update.** ``batch_size`` B is global; each of
the N ranks samples b = B/N trajectories. Every loss of the agents is a sum over the batch's
trajectories (or their rows) divided by the batch size, L = (1/B) Σ_i ℓ_i. Rank r computes
L_r = (1/b) Σ_{i∈r} ℓ_i on its own share, and

    (1/N) Σ_r ∇L_r = (1/(N·b)) Σ_i ∇ℓ_i = ∇L,

so averaging the gradients over the ranks before every optimiser step (:func:`average_gradients`,
installed on every optimiser by :func:`attach_gradient_averaging`) is the single-process step on
the concatenated batch. A parameter without a gradient on every rank keeps none (as it would in
one process); one with a gradient on some rank gets the average, counting the others as 0.

Quantities that are not linear in the batch need their own reductions, which are the identity in a
single process: :func:`global_mean` (a mean over the rows of all ranks, Σ/count, e.g. the centring
of advantages, whose row counts differ between ranks), :func:`average` (the mean over ranks of a
per-rank normalised quantity, e.g. a Fisher-vector product), :func:`global_sum` and
:func:`gather_rows` (the concatenated batch, in rank order).

**Bitwise agreement.** Every rank starts from rank 0's parameters (:func:`broadcast_parameters`),
and a reduction hands every rank the same bytes, so parameters, log Z and optimiser states stay
bitwise identical and every decision taken from reduced values (TRPO's line search, whether to
stop) is the same on all ranks.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

_announced = False


@dataclass(frozen=True)
class DataParallel:
    """This process's place in the data-parallel job.

    Attributes:
        rank: 0 … world_size − 1; rank 0 logs, evaluates and writes checkpoints.
        world_size: the number of ranks N.
        local_rank: the rank within its node (its GPU index with ``device="cuda"``).
        backend: ``"gloo"`` or ``"nccl"``.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _environment_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(
            f"the environment variable {name} must be an integer, got {raw!r}"
        ) from None


def world_size() -> int:
    """The number of ranks of the default process group (1 when there is none)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def join(device: torch.device) -> tuple[DataParallel | None, torch.device]:
    """Join the data-parallel job this process belongs to, if any.

    Returns ``(None, device)`` in a single process (``WORLD_SIZE`` unset or 1 and no process group
    of more than one rank). Otherwise initialises the default process group from torchrun's
    environment when none exists (gloo on the CPU, nccl on CUDA), prints ``world_size=N
    backend=...`` once on rank 0, and returns this rank's place and its device: ``cuda`` without
    an index becomes ``cuda:LOCAL_RANK``.

    Raises:
        ValueError: the process group's backend cannot reduce tensors on ``device`` (nccl with a
            CPU agent), or torch.distributed is unavailable in this build of torch.
    """
    dist = torch.distributed
    initialised = dist.is_available() and dist.is_initialized()
    if not initialised and _environment_int("WORLD_SIZE", 1) <= 1:
        return None, device
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but this build of torch has no torch.distributed")
    local_rank = _environment_int("LOCAL_RANK", 0)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    if not initialised:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group(backend, device_id=device)
        else:
            dist.init_process_group(backend)
        atexit.register(_leave)
    if dist.get_world_size() == 1:
        return None, device
    backend = str(dist.get_backend())
    if backend == "nccl" and device.type != "cuda":
        raise ValueError(
            f"the process group uses nccl, which reduces CUDA tensors only, but device={device}; "
            "use device='cuda' or initialise the group with backend='gloo'"
        )
    parallel = DataParallel(dist.get_rank(), dist.get_world_size(), local_rank, backend)
    global _announced
    if parallel.is_main and not _announced:
        print(f"world_size={parallel.world_size} backend={backend}", flush=True)
        _announced = True
    return parallel, device


def _leave() -> None:
    """At exit: wait for every rank, then destroy the group this module initialised, while the
    interpreter is whole (gloo's worker threads would otherwise be torn down with it, which
    aborts the process)."""
    dist = torch.distributed
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def rank(parallel: DataParallel | None) -> int:
    """This process's rank (0 in a single process)."""
    return 0 if parallel is None else parallel.rank


def local_share(total: int, parallel: DataParallel | None, name: str = "batch_size") -> int:
    """This rank's share ``total / N`` of a global count (``total`` in a single process).

    Raises:
        ValueError: ``total`` is not a multiple of the world size (the message names both).
    """
    if parallel is None:
        return total
    if total % parallel.world_size:
        raise ValueError(
            f"{name}={total} does not split evenly across world_size={parallel.world_size} ranks; "
            f"{name} is the global count per iteration, so choose a multiple of "
            f"{parallel.world_size}"
        )
    return total // parallel.world_size


# ---------------------------------------------------------------------------- start-up checks
def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of ``config`` as canonical JSON (sorted keys; non-JSON values by their repr)."""
    text = json.dumps(config, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def check_same_config(config: Mapping[str, Any], device: torch.device) -> None:
    """Compare the hash of this rank's configuration with every other rank's (one all_gather).

    Every rank reaches the same verdict, so a mismatch is an error on all of them, never a hang.

    Raises:
        ValueError: some rank was built with another configuration; the message lists which ranks
            agree with rank 0 and which do not.
    """
    dist = torch.distributed
    digest = bytes.fromhex(config_hash(config))
    mine = torch.tensor(list(digest), dtype=torch.uint8, device=device)
    everyone = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(everyone, mine)
    reference = everyone[0]
    differ = [r for r, other in enumerate(everyone) if not torch.equal(other, reference)]
    if differ:
        raise ValueError(
            f"the agents of ranks {differ} were built with another configuration than rank 0's "
            "(agent class, hyperparameters, env id or env kwargs); every rank of a data-parallel "
            f"run must build the same agent. This rank's configuration: {json.dumps(dict(config), sort_keys=True, default=repr)}"
        )


def broadcast_parameters(modules: Iterable[nn.Module]) -> None:
    """Copy rank 0's parameters and buffers to every rank (one broadcast per dtype)."""
    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
    for group in _by_dtype(tensors).values():
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        torch.distributed.broadcast(flat, src=0)
        offset = 0
        with torch.no_grad():
            for t in group:
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()


def _by_dtype(tensors: Iterable[Tensor]) -> dict[tuple[torch.dtype, torch.device], list[Tensor]]:
    groups: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    return groups


# ---------------------------------------------------------------------------- gradients
def average_gradients(params: Iterable[Tensor]) -> None:
    """Replace each parameter's gradient by its average over the ranks: one flat all-reduce per
    dtype, carrying a has-gradient flag per parameter (see the module docstring)."""
    n = world_size()
    for group in _by_dtype(params).values():
        sizes = [p.numel() for p in group]
        total = sum(sizes)
        flat = torch.zeros(total + len(group), dtype=group[0].dtype, device=group[0].device)
        offset = 0
        for i, (p, size) in enumerate(zip(group, sizes, strict=True)):
            if p.grad is not None:
                flat[offset : offset + size] = p.grad.reshape(-1)
                flat[total + i] = 1.0
            offset += size
        torch.distributed.all_reduce(flat)
        flat[:total].div_(n)
        present = flat[total:].tolist()
        offset = 0
        for p, size, count in zip(group, sizes, present, strict=True):
            p.grad = flat[offset : offset + size].view_as(p) if count > 0 else None
            offset += size


def attach_gradient_averaging(
    optimizers: Iterable[torch.optim.Optimizer],
) -> list[torch.utils.hooks.RemovableHandle]:
    """Average the gradients of each optimiser's parameters over the ranks right before each of
    its steps (an optimiser step pre-hook), so every update rule that steps an optimiser (the
    balance losses, the value and policy steps of the estimator, DQN) is data-parallel without
    knowing it. Returns the hooks' handles."""

    def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        average_gradients(p for group in optimizer.param_groups for p in group["params"])

    return [optimizer.register_step_pre_hook(hook) for optimizer in optimizers]


# ---------------------------------------------------------------------------- reductions
def average(x: Tensor) -> Tensor:
    """The mean over ranks of ``x`` (``x`` itself in a single process)."""
    n = world_size()
    if n == 1:
        return x
    out = x.detach().clone()
    torch.distributed.all_reduce(out)
    return out / n


def global_sum(x: Tensor) -> Tensor:
    """The sum over ranks of ``x`` (``x`` itself in a single process)."""
    if world_size() == 1:
        return x
    out = x.detach().clone()
    torch.distributed.all_reduce(out)
    return out


def global_count(count: int, device: torch.device) -> int:
    """The sum over ranks of a count (``count`` itself in a single process)."""
    if world_size() == 1:
        return count
    return int(global_sum(torch.tensor(count, device=device)))


def global_mean(x: Tensor) -> Tensor:
    """The mean of every element of ``x`` on every rank: Σ over all ranks / their total count.

    In a single process this is ``x.mean()``; across ranks whose ``x`` have different lengths it
    is the mean of the concatenation, not the mean of the ranks' means.
    """
    if world_size() == 1:
        return x.mean()
    packed = torch.stack(
        [x.detach().sum().double(), x.new_full((), x.numel(), dtype=torch.float64)]
    )
    torch.distributed.all_reduce(packed)
    return (packed[0] / packed[1]).to(x.dtype)


def gather_rows(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Every rank's rows of each tensor, concatenated in rank order (the single-process batch).

    The tensors of one call share their first dimension on each rank; it may differ between ranks.
    """
    if world_size() == 1:
        return tensors
    dist = torch.distributed
    n = world_size()
    count = torch.tensor([len(tensors[0])], device=tensors[0].device)
    counts = [torch.empty_like(count) for _ in range(n)]
    dist.all_gather(counts, count)
    lengths = [int(c) for c in counts]
    longest = max(lengths)
    out = []
    for t in tensors:
        padded = t.new_zeros((longest, *t.shape[1:]))
        padded[: len(t)] = t
        parts = [torch.empty_like(padded) for _ in range(n)]
        dist.all_gather(parts, padded)
        out.append(torch.cat([part[:length] for part, length in zip(parts, lengths, strict=True)]))
    return tuple(out)


# ---------------------------------------------------------------------------- iterations
def synchronise_iteration(
    stats: Mapping[str, float], generator: torch.Generator, device: torch.device
) -> tuple[dict[str, float], Tensor]:
    """One all_gather at the end of an iteration: every rank's statistics and generator state.

    Returns the global statistics (``transitions`` summed over the ranks; every other statistic,
    a mean over a rank's equal share of the batch, averaged) and the generator states
    ``[N, state_size]`` (uint8, CPU) in rank order, which a checkpoint written by rank 0 records.
    Every rank's statistics must have the same keys (the agents return the same on all ranks).
    """
    dist = torch.distributed
    n = dist.get_world_size()
    keys = sorted(stats)
    values = torch.tensor([float(stats[k]) for k in keys], dtype=torch.float64)
    state = generator.get_state()
    padded = torch.zeros(-(-len(state) // 8) * 8, dtype=torch.uint8)
    padded[: len(state)] = state
    mine = torch.cat([values, padded.view(torch.float64)]).to(device)
    everyone = [torch.empty_like(mine) for _ in range(n)]
    dist.all_gather(everyone, mine)
    rows = torch.stack(everyone).cpu()
    per_rank = rows[:, : len(keys)]
    states = rows[:, len(keys) :].contiguous().view(torch.uint8)[:, : len(state)]
    summed = per_rank.sum(dim=0)
    merged = {
        k: float(summed[i] if k == "transitions" else summed[i] / n) for i, k in enumerate(keys)
    }
    return merged, states.clone()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any rank (one all-reduce of one element)."""
    out = torch.tensor([float(flag)], device=device)
    torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.MAX)
    return bool(out.item())


def resume_generator(generator: torch.Generator, states: Tensor, rank: int) -> None:
    """Set rank ``rank``'s generator from a checkpoint's per-rank states ``[N_saved, size]``.

    A rank the checkpoint has a state for continues its own stream (at the same world size the
    resumed run is bitwise the uninterrupted one). A rank it has none for (more ranks than were
    saved) gets a fresh stream, seeded by SHA-256 of the saved state of rank ``rank mod N_saved``
    and ``rank``: deterministic and distinct per rank, so the resumed run is statistically, not
    bitwise, the same as one at the saved world size.
    """
    if rank < len(states):
        generator.set_state(states[rank].clone())
        return
    source = states[rank % len(states)].numpy().tobytes() + rank.to_bytes(8, "little")
    generator.manual_seed(int.from_bytes(hashlib.sha256(source).digest()[:8], "little"))


# ---------------------------------------------------------------------------- the agent's hooks
# Each takes a GFlowNetAlgorithm (``parallel``, ``device``, ``generator``, ``_modules()``,
# ``_hyperparameters()``) and does nothing in a single process.
def start(agent: Any) -> None:
    """Make a freshly built agent one rank of the data-parallel run: compare its configuration
    with the other ranks' (class, policy, env id and kwargs, task, hyperparameters but for the
    output settings), copy rank 0's parameters, average the gradients of every optimiser it
    checkpoints before each step, and gather the generator states.

    The contract this puts on an agent: its optimisers exist once ``_setup_model`` has run and are
    all in ``_modules()`` (as checkpoints need anyway), and every rank steps each of them the same
    number of times per iteration; whatever decides whether a step happens is computed from
    global quantities (:func:`global_sum` and friends), never from the local batch alone."""
    if agent.parallel is None:
        return
    hyperparameters = agent._hyperparameters()
    for name in ("verbose", "tensorboard_log"):
        hyperparameters.pop(name, None)
    config = {
        "algorithm": type(agent).__name__,
        "policy": agent.policy_name,
        "env_id": agent.env_id,
        "env_kwargs": agent.env_kwargs,
        "task": type(agent.task).__name__,
        "hyperparameters": hyperparameters,
    }
    check_same_config(config, agent.device)
    modules = list(agent._modules().values())
    broadcast_parameters([m for m in modules if isinstance(m, nn.Module)])
    attach_gradient_averaging([m for m in modules if isinstance(m, torch.optim.Optimizer)])
    agent._generator_states = synchronise_iteration({}, agent.generator, agent.device)[1]


def end_iteration(agent: Any, stats: Mapping[str, float]) -> dict[str, float]:
    """The iteration's global statistics (:func:`synchronise_iteration`); keeps the generator
    states for a checkpoint."""
    if agent.parallel is None:
        return dict(stats)
    merged, agent._generator_states = synchronise_iteration(stats, agent.generator, agent.device)
    return merged


def agree(agent: Any, keep_going: bool) -> bool:
    """Whether every rank goes on: False on all ranks when any rank (rank 0, whose callbacks ran)
    says stop."""
    if agent.parallel is None:
        return keep_going
    return not any_rank(not keep_going, agent.device)


def generator_states(agent: Any) -> dict[str, Tensor]:
    """What a checkpoint adds to the RNG states: every rank's generator state, ``[N, size]``."""
    if agent.parallel is None:
        return {}
    return {"generators": agent._generator_states}


def resume(agent: Any, rng: Mapping[str, Tensor]) -> None:
    """Set the agent's generator from a checkpoint's RNG states (:func:`resume_generator`; a
    single-process checkpoint holds rank 0's state only)."""
    states = rng.get("generators", rng["generator"].unsqueeze(0)).cpu()
    if states.dim() != 2 or states.dtype != torch.uint8:
        raise RuntimeError(
            f"generator states must be uint8 [ranks, size], got {states.dtype} {list(states.shape)}"
        )
    resume_generator(agent.generator, states, rank(agent.parallel))
    if agent.parallel is not None:
        agent._generator_states = synchronise_iteration({}, agent.generator, agent.device)[1]
