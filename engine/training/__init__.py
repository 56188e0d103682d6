"""Training both stages: crops and augmentation, OHEM, keypoint and detector training, retraining on hard samples."""
