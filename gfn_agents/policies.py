"""Networks: masked categorical policies P_F and P_B, state flows, value networks and log Z.

Conventions. The networks are policies in the sense of :data:`gfn_envs.scoring.Policy`:
``forward_outputs(obs, mask)`` and ``backward_logits(obs, mask)`` return logits (the mask is
accepted for the convention and not needed: :func:`gfn_envs.scoring.masked_log_softmax` gives the
masked actions probability 0). P_F's network outputs ``n_actions`` logits (exit last) and, for the
balance losses that need a state flow, one extra column log F(s) from the same trunk, so one
forward pass gives both. P_B outputs ``n_backward_actions`` logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gfn_envs.scoring import Policy
from gfn_envs.task import Task


def mlp(in_dim: int, out_dim: int, hidden: Sequence[int]) -> nn.Sequential:
    """A ReLU multilayer perceptron with the given hidden widths and a linear output."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def check_net_arch(hidden: Sequence[int], name: str) -> tuple[int, ...]:
    """Validate a list of hidden widths."""
    hidden = tuple(hidden)
    if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(
            f"{name} must be a non-empty list of positive layer widths, got {hidden!r}"
        )
    return hidden


class PolicyNetworks(nn.Module):
    """P_F (with an optional log-flow output), an optional learned P_B, and log Z.

    Args:
        obs_dim, n_actions, n_backward_actions: from the task.
        net_arch: hidden widths of P_F and P_B (the paper's default is 4 × 256).
        learn_backward: build a P_B network (else P_B is uniform over parents).
        flow: add the log F(s) output to P_F (DB, SubTB).
        share_trunk: P_B is a head on P_F's trunk instead of a separate network.
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        n_backward_actions: int,
        net_arch: Sequence[int] = (256, 256, 256, 256),
        learn_backward: bool = False,
        flow: bool = False,
        share_trunk: bool = False,
    ) -> None:
        super().__init__()
        net_arch = check_net_arch(net_arch, "net_arch")
        self.n_actions, self.flow, self.share_trunk = n_actions, flow, share_trunk
        out = n_actions + int(flow)
        if share_trunk:
            self.trunk: nn.Module = mlp(obs_dim, net_arch[-1], net_arch[:-1])
            self.trunk.append(nn.ReLU())
            self.pf: nn.Module = nn.Linear(net_arch[-1], out)
            self.pb: nn.Module | None = (
                nn.Linear(net_arch[-1], n_backward_actions) if learn_backward else None
            )
        else:
            self.trunk = nn.Identity()
            self.pf = mlp(obs_dim, out, net_arch)
            self.pb = mlp(obs_dim, n_backward_actions, net_arch) if learn_backward else None
        self.log_z = nn.Parameter(torch.zeros(()))

    @classmethod
    def for_task(cls, task: Task, net_arch: Sequence[int], **kwargs: bool) -> PolicyNetworks:
        """Networks sized for ``task``, on its device (kwargs as in the constructor)."""
        networks = cls(task.obs_dim, task.n_actions, task.n_backward_actions, net_arch, **kwargs)
        return networks.to(task.device)

    def forward_outputs(self, obs: Tensor, mask: Tensor | None = None) -> Tensor:
        """P_F logits ``[B, n_actions]``, followed by log F(s) when ``flow`` (the P_F policy)."""
        return self.pf(self.trunk(obs))

    def backward_logits(self, obs: Tensor, mask: Tensor | None = None) -> Tensor:
        """P_B logits ``[B, n_backward_actions]`` (the P_B policy); requires ``learn_backward``."""
        if self.pb is None:
            raise RuntimeError("this agent's backward policy is uniform")
        return self.pb(self.trunk(obs))

    def forward_parameters(self) -> list[nn.Parameter]:
        """Parameters of P_F (and the trunk), without log Z and P_B's own head."""
        params = list(self.trunk.parameters()) + list(self.pf.parameters())
        return params

    def backward_parameters(self) -> list[nn.Parameter]:
        """Parameters of P_B's own network or head."""
        return [] if self.pb is None else list(self.pb.parameters())

    @property
    def backward_policy(self) -> Policy | None:
        """P_B as a policy for :mod:`gfn_envs.scoring`: None when it is uniform."""
        return None if self.pb is None else self.backward_logits


class ValueNetwork(nn.Module):
    """A scalar baseline Ṽ(s); the paper's default is 2 × 256."""

    def __init__(self, obs_dim: int, net_arch: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.net = mlp(obs_dim, 1, check_net_arch(net_arch, "value_net_arch"))

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)
