"""The official MCP Python SDK as a client of `tmux-agent mcp serve`.

    python_client.py stdio TMUX_AGENT_BIN DB TMUX_SOCKET_NAME SESSION
    python_client.py http URL TMUX_SOCKET_NAME SESSION

Runs the handshake, ping, tools/list, a tool call with structured content,
an unknown tool (an isError result), a call with arguments of the wrong
type, and reads the live tmux session SESSION (on the server's tmux: `-L
TMUX_SOCKET_NAME` for stdio) through its resource, found in resources/list
under its percent-encoded name, then creates and kills a session of its
own on that tmux server and waits for notifications/resources/list_changed
after each; prints one "ok ..." line per check and exits non-zero on the
first failure. Used by scripts/check-mcp-compat.
"""

import asyncio
import json
import os
import subprocess
import sys
from contextlib import asynccontextmanager

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


# Set each time the server says its resource list changed.
list_changed = asyncio.Event()


async def on_message(message):
    if isinstance(message, types.ResourceListChangedNotification):
        list_changed.set()


@asynccontextmanager
async def connect(argv):
    if argv[0] == "stdio":
        params = StdioServerParameters(
            command=argv[1], args=["-L", argv[3], "mcp", "serve", "--db", argv[2]]
        )
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write, message_handler=on_message) as session:
                yield session
    else:
        async with streamable_http_client(argv[1]) as (read, write, *_):
            async with ClientSession(read, write, message_handler=on_message) as session:
                yield session


def check(what, ok, detail=""):
    if not ok:
        print(f"FAIL python-sdk {what}: {detail}")
        sys.exit(1)
    print(f"ok   python-sdk {what}")


async def main(argv):
    async with connect(argv) as session:
        init = await session.initialize()
        check("initialize", init.server_info.name == "tmux-agent", init)
        await session.send_ping()
        check("ping", True)
        tools = await session.list_tools()
        names = {t.name for t in tools.tools}
        check("tools/list", {"register_goal", "whoami", "save_context"} <= names, names)
        result = await session.call_tool("register_goal", {"name": "python sdk", "metadata": {"k": 1}})
        check(
            "tools/call register_goal",
            not result.is_error and result.structured_content["name"] == "python sdk",
            result,
        )
        result = await session.call_tool("no_such_tool", {})
        check("unknown tool is an isError result", result.is_error, result)
        result = await session.call_tool("update_goal", {"id": "not a number", "status": 5})
        check("wrong argument types are an isError result", result.is_error, result)
        wanted = argv[-1]
        listed = await session.list_resources()
        sessions = json.loads((await session.read_resource("tmux-agent://sessions")).contents[0].text)
        entry = next((s for s in sessions["sessions"] if s["session_name"] == wanted), None)
        check("resources/read tmux-agent://sessions", entry is not None, sessions)
        uris = {str(r.uri) for r in listed.resources}
        check("resources/list has the session", entry["uri"] in uris, uris)
        view = json.loads((await session.read_resource(entry["uri"])).contents[0].text)
        check(
            "resources/read a session by its percent-encoded URI",
            view["session_name"] == wanted and view["goal"] == "compat #(goal)",
            view,
        )
        tmux = ["tmux", "-L", argv[-2]]
        mine = f"python-sdk-{os.getpid()}"
        for step, command in (
            ("created", ["new-session", "-d", "-s", mine]),
            ("killed", ["kill-session", "-t", f"={mine}"]),
        ):
            list_changed.clear()
            subprocess.run(tmux + command, check=True)
            # Up to 20 s (the integration tests' PATIENCE); no timing claim.
            # The change must be followed by a notification, not merely be
            # visible: each notification is checked against a fresh list.
            deadline = asyncio.get_running_loop().time() + 20
            uris = set()
            while True:
                left = deadline - asyncio.get_running_loop().time()
                try:
                    await asyncio.wait_for(list_changed.wait(), max(left, 0))
                except TimeoutError:
                    check(f"list_changed after a session is {step}", False, uris)
                list_changed.clear()
                uris = {str(r.uri) for r in (await session.list_resources()).resources}
                if (f"tmux-agent://session/{mine}" in uris) == (step == "created"):
                    break
            check(f"list_changed after a session is {step}", True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
