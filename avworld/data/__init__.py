"""Trajectory data: collection into Minari, loading, and window sampling for training."""
