"""Access-log enforcement point, Merkle log, proofs, checkpoints and public statistics."""
