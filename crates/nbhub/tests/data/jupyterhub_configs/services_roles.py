# The idle culler as a managed service with the role it needs; a monitoring token.
import sys

c = get_config()

c.JupyterHub.authenticator_class = "jupyterhub.auth.DummyAuthenticator"
c.DummyAuthenticator.password = "culler-pw"
c.Authenticator.allow_all = True

c.JupyterHub.services = [
    {
        "name": "jupyterhub-idle-culler-service",
        "command": [sys.executable, "-m", "jupyterhub_idle_culler", "--timeout=3600"],
    },
    {
        "name": "monitoring",
        "api_token": "monitoring-token-0123456789abcdef",
    },
]
c.JupyterHub.load_roles = [
    {
        "name": "jupyterhub-idle-culler-role",
        "scopes": [
            "list:users",
            "read:users:activity",
            "read:servers",
            "delete:servers",
            # "admin:users", # if using --cull-users
        ],
        "services": ["jupyterhub-idle-culler-service"],
    },
    {
        "name": "monitoring-role",
        "description": "Prometheus scrapes the hub",
        "scopes": ["read:metrics", "read:hub"],
        "services": ["monitoring"],
    },
]
c.JupyterHub.authenticate_prometheus = True
