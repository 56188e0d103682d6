"""What the numbers say: Normalized Error, error types and fix-what-if, suspected label errors (no torch)."""
