"""Policy-dependent reward wrappers: GFlowNet training as ordinary (soft) RL.

The bare environments of :mod:`gfn_envs.env` reward only the exit step, with log R(x). These wrappers
replace that reward by the *policy-dependent* rewards of the paper (Definition 1), so that any
Gymnasium RL library trains a GFlowNet sampler.

Forward MDP (:class:`PolicyDependentReward`), for a step s → s' taken by forward action a:

* move (s' = step(s, a)):   r = log P_B(s | s')                      [− log P_F(s' | s)]
* exit (x → s_f):           r = log R̂(x) − log Z                     [− log P_F(exit | x)]

with log R̂ = max(log R, ``log_reward_clip``) (log R without a clip). The bracketed term is added
with ``entropy=True`` (it needs a forward policy). Along a complete
trajectory τ = (s0 → … → x → s_f) the accumulated reward is therefore

* ``entropy=False``:  Σ_t r_t = log[R(x)·P_B(τ|x)] − log Z
* ``entropy=True``:   Σ_t r_t = log[R(x)·P_B(τ|x)] − log[Z·P_F(τ)]   (minus the TB residual).

The paper (section 2.2) and its code minimise the *cost* c = −r; the two are the same objective.
With ``entropy=True`` the expected return is −KL(P_F(τ) ‖ R(x)P_B(τ|x)/Z), so exact soft RL
(α = 1, γ = 1) on these rewards samples x ∝ R(x) for any fixed P_B; without it, a soft RL
algorithm adds the entropy itself (soft Q-learning, Tiapkin et al. 2024).

Backward MDP (:class:`BackwardPolicyReward`, on ``direction="backward"`` envs), for a backward step
s' → s taken by backward action b, with a = forward_action(s', b) the forward move s → s':

* r = log P_ref(s' | s)   [− log P_B(s | s')]

where P_ref is a forward policy (RL-B: the current P_F) or a guide P_G (RL-G, :mod:`gfn_envs.guides`;
the guide receives P_F's normalised log-probabilities, exactly as in the agents).
With ``exit_term=True`` the first step of each episode also gets log P_ref(exit | x). The
accumulated reward of a backward trajectory from x is Σ log P_ref(forward moves) [+ exit]
[− log P_B(τ|x)], the negative of the backward cost c_B of the paper (section 2.6).

Every reward is minus a cost of :mod:`gfn_envs.scoring` (the forward cost c_t, the backward cost
c̄), computed by the reward models of :mod:`gfn_envs.wrappers.rewards`, so the wrappers and the
agents score transitions identically.

Policies are ``"uniform"`` (uniform over the legal actions) or any callable — a torch module
included — with the convention of :data:`gfn_envs.scoring.Policy`:
``policy(obs float[B, obs_dim], mask bool[B, n]) -> logits [B, n]`` (masked entries are ignored;
log-probabilities are valid logits). For a backward policy, ``obs`` encodes the child s' and
``mask`` is its backward mask. Outputs are checked: a wrong shape, a NaN or +inf logit on a legal
action, or −inf on every legal action of a state raise a ``ValueError``.

**Non-stationarity.** The rewards are functions of the policies (and of log Z). When a learned P_B,
P_F or log Z changes, the rewards of transitions collected earlier are stale. On-policy learners
should collect each rollout after the policies they read are updated (the wrappers evaluate the
policies at step time, so a live handle — a module being trained — is always current). Off-policy
learners must recompute rewards from stored raw states with :meth:`recompute_rewards` (the raw state
of every step is ``info["state"]``).

Both wrappers accept a single :class:`~gfn_envs.env.GFlowNetEnv` (they are ``gymnasium.Wrapper``\\ s,
:mod:`gfn_envs.wrappers.single`) or a native :class:`~gfn_envs.env.GFlowNetVectorEnv` (then the
constructor returns the ``gymnasium.vector.VectorWrapper`` twin, :class:`VectorPolicyDependentReward`
or :class:`VectorBackwardPolicyReward`, :mod:`gfn_envs.wrappers.vector`), possibly under other
Gymnasium wrappers that keep ``info["state"]`` and ``info["action_mask"]``. They read the raw states
from ``info`` and every transition and log-probability from the unwrapped task.
"""

from gfn_envs.wrappers.rewards import (
    BackwardRewardModel,
    CheckedPolicy,
    ForwardRewardModel,
    LogZLike,
    PolicyLike,
    validate_logits,
)
from gfn_envs.wrappers.single import BackwardPolicyReward, PolicyDependentReward
from gfn_envs.wrappers.vector import VectorBackwardPolicyReward, VectorPolicyDependentReward

__all__ = [
    "BackwardPolicyReward",
    "BackwardRewardModel",
    "CheckedPolicy",
    "ForwardRewardModel",
    "LogZLike",
    "PolicyDependentReward",
    "PolicyLike",
    "VectorBackwardPolicyReward",
    "VectorPolicyDependentReward",
    "validate_logits",
]
