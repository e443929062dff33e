# A config with real Python in it: hooks, environment lookups, a loop.
import os

c = get_config()


def set_scratch(spawner):
    spawner.environment["SCRATCH"] = "/scratch/" + spawner.user.name


c.JupyterHub.authenticator_class = "native"
c.NativeAuthenticator.open_signup = False
c.NativeAuthenticator.minimum_password_length = 10
c.Authenticator.admin_users = {"admin"}
c.Spawner.pre_spawn_hook = set_scratch
c.Spawner.cmd = os.environ.get("JUPYTER_CMD", "jupyterhub-singleuser")
c.Spawner.options_form = "<input name='x'>"
c.Spawner.post_stop_hook = lambda spawner: None
if os.path.exists("/etc/jupyterhub/extra.py"):
    load_subconfig("/etc/jupyterhub/extra.py")
for name in ["alice", "bob"]:
    c.Authenticator.allowed_users.add(name)
c.Spawner.default_url = f"/user/{os.environ['USER']}/lab"
c.JupyterHub.port = 8000
