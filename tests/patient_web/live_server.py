"""The real app under uvicorn on a free loopback port, in a thread of this process (stopped by the test)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import uvicorn
from litestar import Litestar

from devstack import free_port


@dataclass
class LiveServer:
    app: Litestar
    port: int = field(default_factory=free_port)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> LiveServer:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, access_log=False, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"live-server-{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the live server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=20)
