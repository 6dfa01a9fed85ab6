"""Drive the seed's Python client class (valtronics_client.py, unchanged) against our server.

Usage: seed_client_scenario.py <ws url> <token> [auth-only]

Connects and authenticates, subscribes to every channel the way the seed's usage example does
(filters as the seed shows them), pings, prints READY, then listens until a line arrives on
stdin (or stdin closes), unsubscribes and disconnects. Everything the class prints goes to
stdout, line-buffered, for the test to read. Exit codes: 0 done, 2 authentication failed.
"""
import asyncio
import sys

from valtronics_client import ValtronicsWebSocketClient


async def main():
    url, token = sys.argv[1], sys.argv[2]
    client = ValtronicsWebSocketClient(url, token)
    try:
        await client.connect()
    except Exception:
        print("SCENARIO: authentication failed", flush=True)
        return 2
    if len(sys.argv) > 3 and sys.argv[3] == "auth-only":
        await client.disconnect()
        return 0
    await client.subscribe("telemetry", {"device_id": 1})
    await client.subscribe("alerts", {"severity": ["critical", "warning"]})
    await client.subscribe("devices")
    await client.subscribe("system", {"metrics": ["cpu_usage", "memory_usage", "active_connections"], "frequency": "1s"})
    await client.ping()
    listener = asyncio.ensure_future(client.listen())
    print("READY", flush=True)
    loop = asyncio.get_event_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    await client.unsubscribe("system")
    await client.disconnect()
    await asyncio.wait_for(listener, 5)
    print("SCENARIO: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
