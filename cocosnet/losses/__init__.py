"""Training losses for CoCosNet: contextual loss and VGG perceptual / feature-matching terms."""
