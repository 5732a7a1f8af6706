"""The real world: scenes, procedural generation, navigation, rendering (numpy/scipy only, no torch)."""
