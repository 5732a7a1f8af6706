"""Learned models: tokenizers (video VAE, audio codec), AV-CDiT, sampling, reward and termination heads."""
