"""Inference: segmenting images with the assistant or the student, and answering clicks."""
