"""Deepfake detectors: the models (xception, efficientnet), their input convention (spec),
architectures by name (registry) and safe checkpoint loading (checkpoint)."""
