"""pix2pix and CycleGAN generators (junyanz's pytorch-CycleGAN-and-pix2pix): image to image. Its
config, networks, original-checkpoint reader, dataset and trainer."""
