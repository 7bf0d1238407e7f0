"""Carepath: a rules-driven care-pathway workflow engine."""
