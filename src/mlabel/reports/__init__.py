"""Plots and reports: `mlabel inspect`, `mlabel evaluate --report`, training and tuning curves."""
