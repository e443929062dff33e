# JupyterHub on the login node of a small Slurm cluster: PAM sign-in, servers as batch jobs.
import batchspawner  # noqa: F401

c = get_config()

c.JupyterHub.bind_url = "http://:8000/jupyter"
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.cookie_secret_file = "/srv/jupyterhub/jupyterhub_cookie_secret"
c.JupyterHub.db_url = "sqlite:////srv/jupyterhub/jupyterhub.sqlite"

c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.service = "login"
c.Authenticator.admin_users = {"hpcadmin"}
c.Authenticator.allowed_users = {"alice", "bob"}

c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 120
c.BatchSpawnerBase.exec_prefix = "sudo -E -u {username}"
c.SlurmSpawner.req_partition = "devel"
c.SlurmSpawner.req_runtime = "00:30:00"
c.SlurmSpawner.req_nprocs = "2"
c.SlurmSpawner.req_memory = "1G"
c.SlurmSpawner.req_options = "--qos normal"
c.SlurmSpawner.req_prologue = """
module purge
module load Python/3.12
"""
c.SlurmSpawner.batch_script = """#!/bin/bash
#SBATCH --partition={{partition}}
#SBATCH --time={{runtime}}
#SBATCH --output={{homedir}}/jupyterhub_slurmspawner_%j.log
#SBATCH --job-name=spawner-jupyterhub
#SBATCH --exclusive
{{prologue}}
{{cmd}}
"""
