"""Guests for helpers.vm: kernels the book builds and boots on QEMU."""
