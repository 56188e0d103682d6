"""File formats and on-disk state: atomic writes, images, FashionAI annotations, COCO, the edit journal, the workspace, prediction scores (no torch)."""
