"""Scenes: the :class:`~avworld.sim.scenes.scene.Scene` types and their JSON format, loading and checks, procedural
apartments, floor plans of meshes, and the materials every surface is made of."""
