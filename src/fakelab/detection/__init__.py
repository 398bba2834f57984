"""Deepfake detectors: the models (xception, efficientnet), their input convention (spec),
architectures by name (registry) and safe checkpoint loading (checkpoint); scoring videos,
images and folders (pipeline: `score_file`, `score_frames`, `VideoScore`, `scan`), HTML
reports with heatmaps (report, gradcam), training with augmentations and self-blended
pseudo-fakes (train: `train_detector`; augment, self_blend), and evaluation (evaluate,
metrics)."""
