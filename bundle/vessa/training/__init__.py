"""Training: the stage-1 and stage-2 trainers, the SSL methods they plug in, and resumable checkpoints."""
