"""A time budget turned into a step count once, early, and saved: a run that stops at its budget resumes exactly.

Stopping "when the clock runs out" would make the number of steps, and with it the learning-rate
schedule, depend on the machine's speed in each segment of a resumed run. Instead the loop times
the first steps and fixes the run's length there::

    steps 0 .. CALIBRATION_STEPS - 1     lr schedule of max_steps (warmup: a tiny lr either way)
    after step CALIBRATION_STEPS         planned = min(max_steps, done + remaining budget / seconds per step)
    every later step                     lr schedule of planned steps; the run ends at step planned

``planned`` is saved in ``last.pt`` (``LoopState.planned_steps``), so a resumed run takes the
same steps as the uninterrupted one would have; a run interrupted before the calibration ends
calibrates again (the steps before it do not depend on the plan). The budget covers the
training steps: evaluations and checkpoints are not in the per-step time and come on top.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

CALIBRATION_STEPS = 20  # steps run before the budget fixes the step count
UNTIMED_STEPS = 5  # the first steps are not timed: allocator warm-up, kernel selection, torch.compile


def plan_steps(done: int, max_steps: int, remaining_seconds: float, seconds_per_step: float) -> int:
    """Steps of a run that has done ``done`` and may train ``remaining_seconds`` more at ``seconds_per_step``."""
    if seconds_per_step <= 0:
        return max_steps
    return max(done, min(max_steps, done + int(max(remaining_seconds, 0.0) / seconds_per_step)))


@dataclass
class StepBudget:
    """The loop's step count under an optional time budget (``max_minutes``)."""

    max_steps: int
    max_minutes: float | None
    planned: int | None  # the saved plan of a resumed run, else None
    clock: Callable[[], float]  # seconds; the loop passes one that waits for the GPU first
    timed_from: float | None = None  # clock reading at the end of step timed_step
    timed_step: int = 0

    @property
    def steps(self) -> int:
        """The run's step count as far as it is known: the plan, or ``max_steps`` until there is one."""
        return self.planned if self.planned is not None else self.max_steps

    def after_step(self, done: int, seconds_so_far: Callable[[], float],
                   agree: Callable[[float], float] = lambda seconds: seconds) -> bool:
        """Time the calibration steps; after the last one fix the plan and return True (once).

        ``seconds_so_far()`` is the training time of the whole run (earlier segments included);
        ``agree`` makes every process use the same per-step time (the mean over ranks under DDP).
        """
        if self.max_minutes is None or self.planned is not None:
            return False
        calibration = min(CALIBRATION_STEPS, self.max_steps)
        if self.timed_from is None:  # start the clock after the untimed steps (or at a resumed run's first step)
            if done >= min(UNTIMED_STEPS, calibration - 1):
                self.timed_from, self.timed_step = self.clock(), done
            return False
        if done < calibration or done == self.timed_step:
            return False
        per_step = agree((self.clock() - self.timed_from) / (done - self.timed_step))
        self.planned = plan_steps(done, self.max_steps, self.max_minutes * 60 - seconds_so_far(), per_step)
        return True
