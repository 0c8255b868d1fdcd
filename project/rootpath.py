"""Serving under a path of a site (SWITCHBOARD_ROOT_PATH=/switchboard).

Every HTTP and WebSocket scope gets the path as its ASGI `root_path`, and its
`path` begins with it, whether the proxy in front passed the path on whole
(`/switchboard/ws/`) or took the prefix off (`/ws/`). Django then routes on
what follows the prefix and puts the prefix in front of every URL it makes;
Channels' router does the same for sockets.
"""


class RootPath:
    def __init__(self, inner, root: str) -> None:
        self.inner = inner
        self.root = root.rstrip("/")

    async def __call__(self, scope, receive, send):
        if self.root and scope["type"] in ("http", "websocket"):
            scope = dict(scope, root_path=self.root)
            if not self.under(scope["path"]):
                scope["path"] = self.root + scope["path"]
                if scope.get("raw_path"):
                    scope["raw_path"] = self.root.encode() + scope["raw_path"]
        return await self.inner(scope, receive, send)

    def under(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root + "/")
