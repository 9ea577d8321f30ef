"""Image recipes: one folder per image, each with its Dockerfile.

Data, read by pytest_cirque.core.images.
"""
