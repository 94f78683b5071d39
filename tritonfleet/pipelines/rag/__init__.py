"""The rag pipeline: its declaration (``pipeline.py``), model logic, commands and benchmark."""
