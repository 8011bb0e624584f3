"""Federated algorithms as pure tensor functions, independent of any runtime."""
