"""Particle detection, point matching, SimpleITK refinement and fusion."""
