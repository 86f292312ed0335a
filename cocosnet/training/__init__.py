"""Training CoCosNet: data for a step, the G and D steps, schedules, checkpoints, the loop."""
