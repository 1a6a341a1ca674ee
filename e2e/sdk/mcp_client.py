"""Drives the gateway's MCP server with the official MCP Python SDK (Streamable HTTP) and prints
what it saw as JSON.

usage: mcp_client.py URL API_KEY CALLS_JSON
  URL like http://127.0.0.1:10000/mcp; API_KEY names the consumer (Envoy's api_key_auth);
  CALLS_JSON a list of {"tool": name, "arguments": {...}} called in order after tools/list.
"""
import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared.exceptions import McpError


async def run(url: str, key: str, calls: list) -> dict:
    out = {}
    headers = {"Authorization": f"Bearer {key}"}
    async with streamablehttp_client(url, headers=headers) as (read, write, session_id):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            out["protocol"] = init.protocolVersion
            out["server"] = init.serverInfo.name
            out["session_id"] = session_id()
            await session.send_ping()
            tools = await session.list_tools()
            out["tools"] = [{"name": t.name, "inputSchema": t.inputSchema} for t in tools.tools]
            results = []
            for call in calls:
                try:
                    r = await session.call_tool(call["tool"], call.get("arguments", {}))
                    text = "".join(c.text for c in r.content if getattr(c, "type", "") == "text")
                    results.append({"ok": True, "isError": r.isError, "text": text})
                except McpError as e:
                    results.append({"ok": False, "code": e.error.code, "error": e.error.message})
            out["calls"] = results
    return out


def main() -> None:
    url, key, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    print(json.dumps(asyncio.run(run(url, key, calls))))


if __name__ == "__main__":
    main()
