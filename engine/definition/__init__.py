"""The pathway language: models, loader, errors."""
