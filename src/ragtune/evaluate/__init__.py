"""Evaluation: datasets (BEIR), retrieval runs and IR metrics (scored by ir-measures)."""
