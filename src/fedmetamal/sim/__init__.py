"""Simulation runtime: a whole federation in one process, clients batched as tensors."""
