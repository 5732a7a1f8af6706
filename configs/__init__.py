"""Hydra configs of avworld, shipped as package data."""
