"""ferlab: train, evaluate, explain and serve facial expression recognition models."""

__version__ = "0.1.0"
