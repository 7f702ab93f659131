"""Self-supervised losses, one small module per technique."""
