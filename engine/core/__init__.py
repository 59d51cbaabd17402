"""The runtime core: model packages, the renderer, styles, size policy, quality, compiled cache."""
