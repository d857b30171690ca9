"""Experiments over many training runs: sweeps (grids of ordinary runs, resumable cell by cell),
scaling-law fits (IsoFLOP profiles and the parametric loss L(N, D)), and the compute planner."""
