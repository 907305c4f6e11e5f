"""SB3 algorithms configured for GFlowNet rewards.

* :data:`GFN_PPO_KWARGS`: MaskablePPO hyperparameters suited to GFlowNet rewards (γ = 1,
  λ = 0.99, no entropy bonus, since the soft rewards carry the entropy).
* **Masked A2C.** SB3's A2C cannot mask. :func:`masked_a2c` returns a ``MaskablePPO`` configured as
  A2C: one epoch, one minibatch holding the whole rollout, no advantage normalisation. At the
  rollout's parameters the PPO ratio is 1, so the clipped surrogate's gradient is exactly the A2C
  policy gradient (plus the same value and entropy terms); the optimizer is Adam unless
  ``policy_kwargs`` says otherwise (A2C's default is RMSprop). Illegal actions are never sampled.
"""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.vec_env import VecEnv

GFN_PPO_KWARGS: dict[str, Any] = {"gamma": 1.0, "gae_lambda": 0.99, "ent_coef": 0.0}
"""MaskablePPO settings for policy-dependent rewards: undiscounted, long GAE, entropy in rewards."""


def masked_a2c(env: VecEnv, n_steps: int = 5, **kwargs: Any) -> Any:
    """A2C with action masks: ``MaskablePPO`` with one epoch over one full-rollout minibatch.

    See the module docstring for why this is A2C's update. ``kwargs`` go to ``MaskablePPO``.
    """
    from sb3_contrib import MaskablePPO

    for fixed in ("n_epochs", "batch_size", "normalize_advantage"):
        if fixed in kwargs:
            raise ValueError(f"{fixed} is fixed by masked_a2c")
    settings = {"learning_rate": 7e-4, "gae_lambda": 1.0, "ent_coef": 0.0, "vf_coef": 0.5}
    settings |= kwargs
    return MaskablePPO(
        "MlpPolicy",
        env,
        n_steps=n_steps,
        n_epochs=1,
        batch_size=n_steps * env.num_envs,
        normalize_advantage=False,
        **settings,
    )
