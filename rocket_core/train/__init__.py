"""Training: the trainer behind `rocket align` (accelerate + peft), checkpoints, schedules."""
