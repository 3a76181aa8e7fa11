"""Training, data preparation and benchmarking code for usvcl (imports usvcl_hf, never the reverse)."""
