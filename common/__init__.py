"""Foundations every layer may use: errors, atomic writes, classes, pairing, image decoding."""
