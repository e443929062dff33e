# jupyterhub_moss: partitions with their limits and Jupyter environments.
import batchspawner
import jupyterhub_moss

c = get_config()

jupyterhub_moss.set_config(c)

c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "moss-pw"
c.Authenticator.allow_all = True
c.BatchSpawnerBase.exec_prefix = ""

VENV = "/opt/jupyter/venv"

c.MOSlurmSpawner.partitions = {
    "devel": {
        "architecture": "x86_64",
        "description": "Quick tests",
        "gpu": None,
        "max_ngpus": 0,
        "max_nprocs": 2,
        "max_runtime": 30 * 60,
        "simple": True,
        "jupyter_environments": {
            "default": {"path": VENV + "/bin/", "description": "Default"},
        },
    },
    "batch": {
        "architecture": "x86_64",
        "description": "Batch nodes",
        "gpu": None,
        "max_ngpus": 0,
        "max_nprocs": 4,
        "max_runtime": 2 * 3600,
        "simple": True,
        "jupyter_environments": {
            "default": {"path": VENV + "/bin/", "description": "Default"},
            "modules": {"modules": "Python/3.12 JupyterLab", "path": "", "description": "Lmod stack"},
        },
    },
}
