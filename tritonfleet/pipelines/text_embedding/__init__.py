"""The text_embedding pipeline: its declaration (``pipeline.py``), model logic, commands and benchmark."""
