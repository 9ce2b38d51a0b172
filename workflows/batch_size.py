"""``--batch-size auto``: find the clips-per-batch that scores fastest here, on the job's own batches.

On a CPU the fastest batch is often small and depends on the model, the clip
size and the caches: X3D-S at 13x160x160 on 2 cores scores 6.1 clips/s one at a
time, 11.4 in pairs, 8.6 in fours and 7.2 in eights. A GPU wants the biggest
batch that fits. So nothing is guessed: the first batches of the job try sizes
1, 2, 4, ... (each timed ``trials`` times after one warm-up batch, since the
first call of a new shape builds kernels) and the climb stops at the first size
slower per clip than the best so far; the rest of the job runs at the best.
No work is wasted: the trial batches are real batches of the job.

Example::

    tuner = BatchSizeTuner(limit=16)
    while clips_left:
        n = tuner.size                              # clips for the next batch
        began = time.perf_counter()
        scorer.score(batch[:n])
        tuner.record(n, time.perf_counter() - began)
    tuner.size                                      # e.g. 2, once tuner.settled
"""
from __future__ import annotations

import statistics

from vkit.registry.errors import ConfigError


class BatchSizeTuner:
    """Climbs through batch sizes 1, 2, 4, ... ``limit`` while a bigger batch is faster per clip, then keeps the best.

    Args:
        limit: the largest size tried.
        trials: timed batches per size (after one warm-up batch of that size).
    """

    def __init__(self, limit: int = 16, trials: int = 3) -> None:
        if not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"batch size tuner: limit must be a positive int, got {limit!r}")
        if not isinstance(trials, int) or trials < 1:
            raise ConfigError(f"batch size tuner: trials must be a positive int, got {trials!r}")
        sizes, size = [], 1
        while size < limit:
            sizes.append(size)
            size *= 2
        self.candidates = sizes + [limit]
        self.trials = trials
        #: Median seconds per clip of each size tried so far.
        self.seconds_per_clip: dict[int, float] = {}
        self._index, self._warm, self._times = 0, False, []  # type: ignore[var-annotated]
        self._best: int | None = None
        self.settled = False

    @property
    def size(self) -> int:
        """Clips for the next batch: the size under trial, or the chosen one once settled."""
        return self._best if self.settled and self._best is not None else self.candidates[self._index]

    def record(self, clips: int, seconds: float) -> None:
        """Time of a batch of ``clips``; batches of another size than :attr:`size` (a last partial one) are ignored."""
        if self.settled or clips != self.size:
            return
        if not self._warm:
            self._warm = True
            return
        self._times.append(seconds / clips)
        if len(self._times) < self.trials:
            return
        size = self.size
        self.seconds_per_clip[size] = statistics.median(self._times)
        if self._best is not None and self.seconds_per_clip[size] >= self.seconds_per_clip[self._best]:
            self.settled = True  # slower than a smaller batch: bigger ones will not help
            return
        self._best = size
        self._index += 1
        self._warm, self._times = False, []
        if self._index == len(self.candidates):
            self.settled = True

    def describe(self) -> str:
        """One line for logs: the sizes tried with their clips/s, and the choice."""
        tried = ", ".join(f"{n}: {1 / s:.2f}" for n, s in self.seconds_per_clip.items())
        state = f"chose {self.size}" if self.settled else f"trying {self.size}"
        return f"batch size auto ({state}; clips/s by size: {tried or 'none yet'})"
