"""SequenceSampler: Decision Transformer training windows, drawn fully vectorized on any device.

The official DT code (gym/experiment.py, get_batch) draws a trajectory with probability proportional
to its length, a start step uniformly inside it, takes the K steps from there truncated at the
episode end, and left-pads the window to K with an attention mask. That is exactly a start index i
drawn uniformly over all N steps of the dataset, window [i, min(i + K, end of i's episode)), so
here a batch is one `randint` plus one (B, K) gather per field: no Python loop per sample. The whole
dataset stays resident as tensors on `device`, so on a GPU sampling happens there.

Image datasets (single 84x84 uint8 frames per step) keep each frame once; the state at step i is the
stack of frames i-3..i of its episode, built at sampling time by index arithmetic (one (B, K, 4)
gather), with the episode's first frame repeated before its start. On CPU the frames are not even
copied: batches read them from the EpisodeSet's array or frame cache map (data/frames.py).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from decision_seq.data.episodes import EpisodeSet
from decision_seq.data.frames import FRAME_STACK, gather_frames, is_mapped, release_pages


def _to_device(frames: np.ndarray, device: torch.device, rows: int = 16_384) -> torch.Tensor:
    """(N, 84, 84) uint8 frames copied to `device` in slices of `rows` (116 MB): no host copy of the whole."""
    out = torch.empty(frames.shape, dtype=torch.uint8, device=device)
    for i in range(0, frames.shape[0], rows):
        out[i : i + rows].copy_(torch.from_numpy(np.array(frames[i : i + rows])))
        release_pages(frames)
    return out


class SequenceSampler:
    """Draws batches of K-step windows from an EpisodeSet.

    Batch (B = batch_size, K = context_len, S = state dim, A = action dim):
      states         (B, K, S) float32, normalized by the dataset's obs mean/std;
                     image datasets: (B, K, 4, 84, 84) uint8 frame stacks (oldest first), 0 when padded
      actions        (B, K, A) float32 (Discrete: (B, K) int64)
      returns_to_go  (B, K, 1) float32, divided by rtg_scale
      timesteps      (B, K)    int64, clipped to max_ep_len - 1
      mask           (B, K)    bool, True = real step; padding is on the LEFT
    """

    def __init__(
        self,
        episodes: EpisodeSet,
        context_len: int,
        batch_size: int,
        rtg_scale: float = 1000.0,
        max_ep_len: int = 1000,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ):
        if context_len < 1 or batch_size < 1 or max_ep_len < 1:
            raise ValueError(
                f"context_len, batch_size and max_ep_len must be >= 1, got {context_len}, {batch_size}, {max_ep_len}"
            )
        if rtg_scale <= 0:
            raise ValueError(f"rtg_scale must be > 0, got {rtg_scale}")
        if episodes.max_episode_length > max_ep_len:
            warnings.warn(
                f"dataset {episodes.dataset_id!r} has episodes of {episodes.max_episode_length} steps but "
                f"max_ep_len={max_ep_len}: later timesteps are clipped to {max_ep_len - 1} (as in the DT code)",
                stacklevel=2,
            )
        self.episodes = episodes
        self.context_len = int(context_len)
        self.batch_size = int(batch_size)
        self.rtg_scale = float(rtg_scale)
        self.max_ep_len = int(max_ep_len)
        self.device = torch.device(device)
        self.seed = int(seed)
        self.num_steps = episodes.num_steps
        self.state_dim = episodes.state_dim
        self.action_dim = episodes.action_dim
        self.discrete = episodes.discrete

        # Every resident field gets one extra row at index N holding its padding value, so padded
        # positions are filled by the same gather that reads real steps.
        # Departure from the official DT code, which pads actions with -10 and rtg/timesteps with 0 and
        # pads states with zeros *before* normalization (so they become -mean/std): here every padded
        # value is 0 after preprocessing. Padded positions are masked out of attention and loss, so
        # their values do not matter; zeros keep them harmless for backbones without a mask.
        n = self.num_steps

        def resident(values: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            t = torch.as_tensor(values, dtype=dtype)
            pad = torch.zeros((1, *t.shape[1:]), dtype=dtype)
            return torch.cat([t, pad]).to(self.device)

        self.image = episodes.is_image
        if self.image:
            # One uint8 frame per step, no padding row. On the CPU never copied: a mapped frame cache stays a
            # numpy map that each batch reads from (its pages released after, so they never add up in RSS);
            # an in-memory array is shared by the tensor. On another device: copied there once, in slices.
            frames = episodes.observations  # (N, 84, 84) uint8
            if self.device.type == "cpu":
                self._frames = frames if is_mapped(frames) else torch.from_numpy(frames)
            else:
                self._frames = _to_device(frames, self.device)
            # For each step the first step of its episode, which bounds its stack.
            starts = np.repeat(episodes.episode_starts, episodes.episode_lengths)
            self._episode_start = torch.as_tensor(starts, dtype=torch.int64, device=self.device)  # (N,)
            self._stack_offsets = torch.arange(1 - FRAME_STACK, 1, device=self.device)  # (4,): -3..0
        else:
            states = (episodes.observations - episodes.obs_mean) / episodes.obs_std
            self._states = resident(states, torch.float32)  # (N+1, S)
        if self.discrete:
            self._actions = resident(episodes.actions, torch.int64)  # (N+1,), padding action 0
        else:
            self._actions = resident(episodes.actions, torch.float32)  # (N+1, A)
        self._rtg = resident(episodes.returns_to_go / self.rtg_scale, torch.float32)  # (N+1,)
        self._timesteps = resident(np.minimum(episodes.timesteps, self.max_ep_len - 1), torch.int64)  # (N+1,)
        # For each flat step index, one past the last step of its episode.
        ends = np.repeat(episodes.episode_starts + episodes.episode_lengths, episodes.episode_lengths)
        self._episode_end = torch.as_tensor(ends, dtype=torch.int64, device=self.device)  # (N,)
        self._offsets = torch.arange(self.context_len, device=self.device)  # (K,)
        self._pad_index = n

        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(self.seed)

    def sample(self) -> dict[str, torch.Tensor]:
        """One batch of windows; see the class docstring for the shapes."""
        K = self.context_len
        # Uniform global start index == length-weighted episode + uniform start inside it.
        start = torch.randint(self.num_steps, (self.batch_size,), generator=self._generator, device=self.device)  # (B,)
        length = torch.clamp(self._episode_end[start] - start, max=K)  # (B,) real steps in the window
        pad = K - length  # (B,) left padding
        mask = self._offsets[None, :] >= pad[:, None]  # (B, K)
        # Position p holds step start + (p - pad); padded positions read the zero row at index N.
        index = start[:, None] + self._offsets[None, :] - pad[:, None]  # (B, K)
        index = torch.where(mask, index, self._pad_index).view(-1)  # (B*K,)

        def gather(table: torch.Tensor) -> torch.Tensor:
            # index_select rather than table[index]: on CPU, advanced indexing fans out to the
            # intra-op thread pool and stalls for ~1 ms whenever another process holds a core.
            return table.index_select(0, index).view(self.batch_size, K, *table.shape[1:])

        return {
            "states": self._stacks(index, mask) if self.image else gather(self._states),  # (B, K, S) or frames
            "actions": gather(self._actions),  # (B, K, A) or (B, K)
            "returns_to_go": gather(self._rtg).unsqueeze(-1),  # (B, K, 1)
            "timesteps": gather(self._timesteps),  # (B, K)
            "mask": mask,  # (B, K)
        }

    def _stacks(self, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Frame stacks (B, K, 4, 84, 84) uint8 for flat step indices (B*K,) (N at padded positions).

        Departure from the DT Atari code, which takes DQN-Replay's stored stacks (whose first steps hold the
        replay buffer's zero padding frames): the episode's first frame is repeated before its start, as
        Gymnasium's FrameStackObservation does after a reset, so training and evaluation stacks agree."""
        step = torch.where(mask.view(-1), index, 0)  # (B*K,) any valid row for padding, zeroed below
        frame = torch.maximum(
            step[:, None] + self._stack_offsets, self._episode_start.index_select(0, step)[:, None]
        )  # (B*K, 4)
        if isinstance(self._frames, torch.Tensor):
            stacks = self._frames.index_select(0, frame.view(-1))  # (B*K*4, 84, 84)
        else:
            stacks = torch.from_numpy(gather_frames(self._frames, frame.view(-1).numpy()))
        stacks = stacks.view(self.batch_size, self.context_len, FRAME_STACK, *stacks.shape[1:])
        return stacks.masked_fill_(~mask[:, :, None, None, None], 0)  # (B, K, 4, 84, 84); a fresh tensor: in place

    def __iter__(self):
        while True:
            yield self.sample()

    def state_dict(self) -> dict:
        """Generator state (a CPU uint8 tensor) so a resumed run continues the same sample stream."""
        return {"generator_state": self._generator.get_state(), "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self._generator.set_state(state["generator_state"].cpu())
