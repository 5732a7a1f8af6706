"""Pictures and videos of what agents see and hear: arrays in, files out.

- :mod:`avworld.viz.video`: ``write_video`` (H.264 frames with AAC binaural sound, via PyAV) and ``probe``.
- :mod:`avworld.viz.panels`: ``compose`` one video frame from a step's views, map, spectrograms and caption.

Nothing here imports the simulator, the envs or the models; ``avworld viz`` (in :mod:`avworld.cli`) runs an
episode and hands the arrays over.
"""
