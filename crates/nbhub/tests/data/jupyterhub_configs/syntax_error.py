c = get_config()

c.JupyterHub.port = 8000
c.Authenticator.admin_users = {"admin",
c.Spawner.default_url = "/lab"
