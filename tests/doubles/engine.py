"""`WrappedEngine`: the real Renderer behind what a server or editor test injects (faults,
gates, throttling, counting). Subclasses override `render` and call `super().render`."""

from __future__ import annotations


class WrappedEngine:
    """Delegates the engine interface the server and editor use to a real renderer."""

    def __init__(self, renderer):
        self.renderer = renderer
        self.manifest = renderer.manifest

    def render(self, labels, instances=None, style=None):
        return self.renderer.render(labels, instances, style)

    def describe(self):
        return self.renderer.describe()

    def fitted_size(self, h, w, what="label map"):
        return self.renderer.fitted_size(h, w, what)

    def close(self):
        self.renderer.close()
