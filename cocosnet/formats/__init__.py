"""Pure codecs every layer above may use: image tensors, OpenPose files and skeleton inputs, the
demo's synthetic scenes. Nothing here reads a manifest or knows a dataset's layout."""
