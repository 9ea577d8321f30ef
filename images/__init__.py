"""Image recipes: one folder per image, each with its Dockerfile (data, read by pytest_cirque.image_builder)."""
