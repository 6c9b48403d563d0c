"""The training engine: the fit plan, the loop, RunState, resume, evaluation."""
