"""The tabular pipeline: its declaration (``pipeline.py``), model logic, commands and benchmark."""
