"""The two-stage model: presets, keypoint network, targets, crops, detector, checkpoints, the package, devices, the inference pipeline."""
