"""The image_classifier pipeline: its declaration (``pipeline.py``), model logic, commands and benchmark."""
