"""The Python `websockets` client of bench/run's compressed feed: connects (offering
permessage-deflate, as websockets does by default), writes each message and a newline to
stdout, and exits when the server closes. Run with a Python that has websockets."""

import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def main(url):
    out = sys.stdout.buffer
    async with connect(url, max_size=None) as ws:
        try:
            while True:
                out.write(await ws.recv(decode=False))
                out.write(b"\n")
        except ConnectionClosed:
            pass
    out.flush()


asyncio.run(main(sys.argv[1]))
