"""Image observations, defined once (torch-free, so the dataset commands import it cheaply).

Atari observations are single 84x84 grayscale uint8 frames, one per step, as DQN-Replay and the DT
Atari code store them; a model's observation is the last FRAME_STACK of them (DQN's history length,
Mnih et al. 2015), stacked by the sampler and by the evaluation, never stored stacked.
"""

FRAME_SHAPE: tuple[int, int] = (84, 84)
FRAME_STACK = 4
