"""Home and node orchestration: the session service, homes, nodes, their networks,
images and cleanup. Above capabilities, radios and device models; below the plugin."""
