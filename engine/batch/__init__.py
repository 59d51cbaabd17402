"""Batch rendering of folders of label maps, locally or on Ray."""
