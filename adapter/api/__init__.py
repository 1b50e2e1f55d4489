"""The HTTP edge (aiohttp): middlewares, routes, handlers, wire shapes, Status bodies."""
