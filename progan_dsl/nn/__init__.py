"""The small layer runtime that generated modules are built from (see `layers.py`)."""
