"""The test process's side of the media: the medium container and typed clients."""
