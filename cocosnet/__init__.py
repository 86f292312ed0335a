"""cocosnet: CoCosNet exemplar-based image translation as a reproducible pipeline."""

__version__ = "0.1.0"
