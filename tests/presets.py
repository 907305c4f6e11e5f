"""The presets that the behaviour tests cover one by one: every trained GFlowNet learner (the
policy-gradient family, its backward learners and the balance losses). The uniform-P_B variants
(TB-U, DB-U, SubTB-U) differ from these only by a fixed P_B, and the DQNs have tests of their own."""

TRAINED_PRESETS = (
    "RL-U",
    "RL-B",
    "RL-G",
    "RL-T",
    "RL-PPO",
    "RL-TLM",
    "SubEB-U",
    "SubEB-B",
    "TB",
    "TB-TLM",
    "DB",
    "SubTB",
)
