"""What the agent hears: room acoustics on the scene's geometry (image sources, diffraction, reverberation), binaural
responses (a spherical head or a measured HRTF) and their caches, the sound library, and the per-step audio mix."""
