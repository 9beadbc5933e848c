"""What a run shows while it trains: logs, TensorBoard, sample grids, collapse detectors, plots."""
