"""Evaluation: metrics, and the protocols of navigation (benchmark), tokenizers, world-model prediction and rollouts."""
