"""A farm of tiny single-user servers for bench/hub, so that spawns measure the hub, not JupyterLab.

Each spawned "server" is a shell that writes one line (its pid and its JUPYTERHUB_* variables) to
the farm's FIFO and then sleeps, so that the hub has a live process to poll. The farm (one asyncio
process for all of them) opens a listener on the port the hub gave, answers the readiness probe
with 200, and records when it first answered: the start of the hub's own overhead. Requests to
`/user/<name>/lab` need a login, done the way jupyterhub-singleuser does it (OAuth with the hub:
authorize redirect, code exchange at the token endpoint, `GET /hub/api/user`), so that a login
storm exercises the hub's OAuth provider too.

    python hub_farm.py FIFO RECORD_FILE
writes `<user> <first_probe_unix_time>` lines to RECORD_FILE as servers first answer.
"""

import asyncio
import os
import secrets
import sys
import time
import urllib.parse

from aiohttp import ClientSession, web

FIFO, RECORD = sys.argv[1], sys.argv[2]


class Server:
    def __init__(self, fields):
        (self.pid, service_url, self.user, self.client_id, self.api_token, self.api_url,
         self.callback) = fields
        url = urllib.parse.urlparse(service_url)
        self.host, self.port = url.hostname, url.port
        self.prefix = f"/user/{self.user}/"
        self.answered = False
        self.states = set()
        self.sessions = set()


servers = {}  # user -> Server
pids = []
record = open(RECORD, "a", buffering=1)
client: ClientSession


async def handle(request: web.Request) -> web.StreamResponse:
    parts = request.path.split("/")
    server = servers.get(parts[2]) if len(parts) > 2 and parts[1] == "user" else None
    if server is None:
        return web.json_response({"error": "no such server"}, status=404)
    if not server.answered:
        server.answered = True
        record.write(f"{server.user} {time.time():.6f}\n")
    rest = request.path[len(server.prefix):]
    if rest.startswith("oauth_callback"):
        return await oauth_callback(server, request)
    if rest.startswith("lab"):
        if request.cookies.get(f"farm-{server.user}") in server.sessions:
            return web.json_response({"farm": True, "user": server.user})
        state = secrets.token_urlsafe(16)
        server.states.add(state)
        query = urllib.parse.urlencode({
            "client_id": server.client_id, "redirect_uri": server.callback,
            "response_type": "code", "state": state,
        })
        hub_prefix = urllib.parse.urlparse(server.api_url).path.rsplit("/api", 1)[0]
        raise web.HTTPFound(f"{hub_prefix}/api/oauth2/authorize?{query}")
    return web.json_response({"version": "farm", "path": request.path})


async def oauth_callback(server: Server, request: web.Request) -> web.StreamResponse:
    state, code = request.query.get("state"), request.query.get("code")
    if state not in server.states or not code:
        return web.json_response({"error": "bad state or no code"}, status=400)
    server.states.discard(state)
    form = {
        "client_id": server.client_id, "client_secret": server.api_token,
        "grant_type": "authorization_code", "code": code, "redirect_uri": server.callback,
    }
    async with client.post(f"{server.api_url}/oauth2/token", data=form) as r:
        if r.status != 200:
            detail = (await r.text())[:300]
            print(f"farm: {server.user}: token endpoint {r.status}: {detail}", file=sys.stderr)
            return web.json_response({"error": f"token endpoint: {r.status}: {detail}"}, status=502)
        token = (await r.json())["access_token"]
    async with client.get(f"{server.api_url}/user",
                          headers={"Authorization": f"token {token}"}) as r:
        who = await r.json()
    if who.get("name") != server.user:
        return web.json_response({"error": f"token is {who.get('name')}'s"}, status=403)
    session = secrets.token_urlsafe(16)
    server.sessions.add(session)
    resp = web.HTTPFound(f"{server.prefix}lab")
    resp.set_cookie(f"farm-{server.user}", session, path=server.prefix, httponly=True)
    raise resp


async def main():
    global client
    client = ClientSession()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    loop = asyncio.get_running_loop()
    fd = os.open(FIFO, os.O_RDWR | os.O_NONBLOCK)
    buf = b""
    lines: asyncio.Queue = asyncio.Queue()

    def readable():
        nonlocal buf
        try:
            buf += os.read(fd, 65536)
        except BlockingIOError:
            return
        *complete, buf = buf.split(b"\n")
        for line in complete:
            lines.put_nowait(line.decode())

    loop.add_reader(fd, readable)
    with open(RECORD + ".pids", "a", buffering=1) as pidfile:
        while True:
            fields = (await lines.get()).split()
            if len(fields) != 7:
                print(f"farm: bad line {fields!r}", file=sys.stderr)
                continue
            server = Server(fields)
            pidfile.write(f"{server.pid}\n")
            old = servers.get(server.user)
            servers[server.user] = server
            if old is not None and old.port == server.port:
                continue
            try:
                await web.TCPSite(runner, server.host, server.port, reuse_address=True).start()
            except OSError as e:
                print(f"farm: {server.user}: {e}", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
