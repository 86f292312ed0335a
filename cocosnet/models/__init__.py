"""CoCosNet networks: correspondence, translation, discriminator, VGG, official import."""
