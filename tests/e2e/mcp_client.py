"""A client of `smart-rerun mcp` on the official MCP Python SDK, for the e2e tests.

    python mcp_client.py stdio BINARY ARG...      spawns the server over stdio
    python mcp_client.py http URL TOKEN           connects over Streamable HTTP with the bearer token

Reads a JSON list of tool calls ({"tool", "arguments"}) on stdin, and prints one JSON document: the
tools as listed (name, input and output schema), the resources, the latest report resource's text, and
each call's structured content, error flag and text, or the protocol error it was answered with.
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.shared.exceptions import MCPError


async def session_work(session, calls):
    await session.initialize()
    tools = await session.list_tools()
    out = {
        "tools": [
            {
                "name": t.name,
                "input_schema": t.input_schema if hasattr(t, "input_schema") else t.inputSchema,
                "output_schema": t.output_schema if hasattr(t, "output_schema") else t.outputSchema,
            }
            for t in tools.tools
        ]
    }
    resources = await session.list_resources()
    out["resources"] = [
        {"uri": str(r.uri), "mime_type": getattr(r, "mime_type", None) or getattr(r, "mimeType", None)}
        for r in resources.resources
    ]
    read = await session.read_resource("smart-rerun://report/latest")
    out["resource_text"] = read.contents[0].text
    results = []
    for call in calls:
        try:
            r = await session.call_tool(call["tool"], call.get("arguments") or {})
        except MCPError as e:
            results.append({"tool": call["tool"], "error": {"code": e.error.code, "message": e.error.message}})
            continue
        structured = getattr(r, "structured_content", None)
        if structured is None:
            structured = getattr(r, "structuredContent", None)
        is_error = getattr(r, "is_error", None)
        if is_error is None:
            is_error = getattr(r, "isError", False)
        results.append(
            {
                "tool": call["tool"],
                "structured": structured,
                "is_error": bool(is_error),
                "text": "\n".join(c.text for c in r.content if getattr(c, "text", None) is not None),
            }
        )
    out["calls"] = results
    return out


async def main():
    calls = json.load(sys.stdin)
    mode = sys.argv[1]
    if mode == "stdio":
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(command=sys.argv[2], args=sys.argv[3:])
        async with stdio_client(params) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                out = await session_work(session, calls)
    else:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        url, token = sys.argv[2], sys.argv[3]
        client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        async with client:
            async with streamable_http_client(url, http_client=client) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    out = await session_work(session, calls)
    json.dump(out, sys.stdout)


asyncio.run(main())
