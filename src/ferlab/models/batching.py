"""How many faces one forward pass takes, shared by the trainer's evaluation and the inference
engine (no torch here: the ONNX inference path imports it)."""

FORWARD_BATCH = 256
"""Images per forward pass when no gradients are kept (evaluation, classification): bounds the
memory a large dataset needs without slowing the network down."""
