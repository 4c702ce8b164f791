"""Ground Truth annotation-consolidation Lambda: several workers' label maps -> one, by per-pixel vote."""
