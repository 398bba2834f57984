"""Deepfake detectors: the models (xception, efficientnet, inception), their input convention
(spec), architectures by name (registry), safe checkpoint loading (checkpoint) and ensembles
(ensemble); scoring videos, images and folders (pipeline: `score_file`, `score_frames`,
`VideoScore`, `scan`), HTML reports with heatmaps (report, gradcam), training with
augmentations and self-blended pseudo-fakes (train: `train_detector`; augment, self_blend), and
evaluation (evaluate, metrics). Without trained weights: forensic cues and their shipped
logistic model (cues: `score_video_cues`), head pose (headpose), lip-sync (lipsync) and a
per-frame glitch detector for generated streams (glitch: `GlitchDetector`, `find_glitches`)."""
