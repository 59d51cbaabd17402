"""`p2phd edit`: a live label-map editor in the browser, backed by the Renderer or a server.

`app.create_app` is the HTTP side (Flask: JSON and PNG endpoints); `static/` is the page
(plain HTML/JS/canvas, no build step, works offline); `remote.RemoteRenderer` renders through a
running `p2phd serve` instead of a local Renderer.
"""
