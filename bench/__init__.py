"""Reproducible benchmarks of ccfast; each module runs as ``python -m bench.<name>`` and writes JSON."""
