"""Evaluation metrics (FID, SWD, semantic consistency, style relevance, warp accuracy)."""
