"""nbhub in JupyterLab: the Slurm job's time left and warnings before it ends.

The server extension serves GET {base_url}nbhub/job: it asks the hub, with the server's own
API token, when the job ends (`GET {JUPYTERHUB_API_URL}/users/{user}/servers/{server}/ending`)
and answers with that, the hub's clock, whether Slurm's end signal came, the hub's home page
and when to warn. The JupyterLab extension (prebuilt, in labextension/) shows it.
"""

import json
import os
import time
from datetime import datetime, timezone
from urllib.parse import quote

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Integer, List
from traitlets.config import Configurable

__version__ = "0.1.0"


def _jupyter_server_extension_points():
    return [{"module": "nbhub_jupyterlab"}]


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "nbhub-jupyterlab"}]


class NbhubJupyterLab(Configurable):
    """Settings (`c.NbhubJupyterLab.…` in a jupyter_server_config file)."""

    warn_minutes = List(
        Integer(),
        default_value=[30, 10, 2],
        config=True,
        help="Toasts this many minutes before Slurm ends the job. "
        "NBHUB_JUPYTERLAB_WARN_SECONDS (seconds, separated by commas) overrides it.",
    )
    refresh_seconds = Integer(
        30,
        config=True,
        help="How often JupyterLab asks for the end time (it counts down every second). "
        "NBHUB_JUPYTERLAB_REFRESH_SECONDS overrides it.",
    )

    def warn_seconds(self):
        env = os.environ.get("NBHUB_JUPYTERLAB_WARN_SECONDS", "").strip()
        if env:
            try:
                seconds = [int(s) for s in env.replace(" ", "").split(",") if s]
            except ValueError:
                seconds = [60 * m for m in self.warn_minutes]
        else:
            seconds = [60 * m for m in self.warn_minutes]
        return sorted({s for s in seconds if s > 0}, reverse=True)

    def refresh(self):
        try:
            return max(1, int(os.environ["NBHUB_JUPYTERLAB_REFRESH_SECONDS"]))
        except (KeyError, ValueError):
            return max(1, self.refresh_seconds)


def _hub_url():
    """The hub's URL for this server's end time, or None outside a hub."""
    api = os.environ.get("JUPYTERHUB_API_URL")
    user = os.environ.get("JUPYTERHUB_USER")
    if not api or not user:
        return None
    server = os.environ.get("JUPYTERHUB_SERVER_NAME", "")
    base = api.rstrip("/") + "/users/" + quote(user, safe="@~")
    if server:
        return base + "/servers/" + quote(server, safe="@~") + "/ending"
    return base + "/server/ending"


class JobHandler(APIHandler):
    def initialize(self, settings):
        self.nbhub = settings

    @web.authenticated
    async def get(self):
        url = _hub_url()
        token = os.environ.get("JUPYTERHUB_API_TOKEN")
        if not url or not token:
            raise web.HTTPError(404, "this server was not started by a hub")
        request = HTTPRequest(
            url,
            headers={"Authorization": "token " + token},
            request_timeout=20,
            **_ssl_options(),
        )
        try:
            reply = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as e:
            raise web.HTTPError(502, "the hub answered %s" % e.code) from None
        except OSError as e:
            raise web.HTTPError(502, "the hub did not answer: %s" % e) from None
        hub = json.loads(reply.body)
        self.finish(
            {
                "end": _ms(hub.get("end_time")),
                "now": _ms(hub.get("now")) or int(time.time() * 1000),
                "signal": _ms(hub.get("signal_time")),
                "home_url": hub.get("home_url"),
                "job_id": hub.get("job_id"),
                "warn_seconds": self.nbhub.warn_seconds(),
                "refresh_seconds": self.nbhub.refresh(),
            }
        )


def _ms(stamp):
    """An RFC 3339 time of the hub as milliseconds since the epoch (None stays None)."""
    if not isinstance(stamp, str):
        return None
    try:
        # Python before 3.11 reads no "Z".
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def _ssl_options():
    """The hub's internal TLS, as jupyterhub-singleuser gets it (JUPYTERHUB_SSL_*)."""
    cert = os.environ.get("JUPYTERHUB_SSL_CERTFILE")
    key = os.environ.get("JUPYTERHUB_SSL_KEYFILE")
    ca = os.environ.get("JUPYTERHUB_SSL_CLIENT_CA")
    out = {}
    if cert and key:
        out.update(client_cert=cert, client_key=key)
    if ca:
        out["ca_certs"] = ca
    return out


def _load_jupyter_server_extension(serverapp):
    settings = NbhubJupyterLab(parent=serverapp)
    route = url_path_join(serverapp.web_app.settings["base_url"], "nbhub", "job")
    serverapp.web_app.add_handlers(".*$", [(route, JobHandler, {"settings": settings})])
