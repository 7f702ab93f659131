"""Datasets in their real on-disk formats."""
