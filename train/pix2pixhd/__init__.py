"""pix2pixHD (Wang et al. 2018, NVIDIA's code): label map + instance map (+ instance features) to
image. Its config, networks, original-checkpoint reader, dataset and trainer."""
