"""Learned models (torch only): tokenizers (video VAE, audio codec), AV-CDiT with its reward and termination heads, flow
matching and its samplers, checkpoints, and the imagination core (:mod:`avworld.models.imagination`)."""
