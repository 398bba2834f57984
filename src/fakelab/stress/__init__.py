"""Stress tests: how detectors and animation models hold up under perturbed inputs.

`perturbations` is the library of seeded perturbations (DeeperForensics-1.0's seven and
fakelab's own); `detection` and `animation` run the sweeps behind `fakelab stress`.
"""
