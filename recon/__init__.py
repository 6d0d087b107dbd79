"""k-space reconstruction and sign-flip background removal."""
