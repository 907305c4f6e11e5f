"""Test-wide settings: one torch thread (on 2 shared cores more threads can be 30x slower)."""

import torch

torch.set_num_threads(1)
