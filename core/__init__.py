"""What every vertical shares: errors, compat, store, checkpoints, backbones, fusion, compression."""
