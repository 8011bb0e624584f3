"""Data layer: datasets, loaders, the synthetic generator, preprocessing, partitioners."""
