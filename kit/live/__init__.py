"""Live mode: the designs as real agent workers in a real LiveKit room (the local server, yours, or Cloud)."""
