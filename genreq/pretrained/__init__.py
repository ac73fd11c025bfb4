"""Pretrained networks converted from other frameworks (no TensorFlow at run time)."""
