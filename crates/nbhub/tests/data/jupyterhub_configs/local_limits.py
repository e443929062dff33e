# Servers as local processes with limits, named servers and a spawn limit.
c = get_config()

c.JupyterHub.ip = '127.0.0.1'
c.JupyterHub.port = 8000
c.JupyterHub.authenticator_class = 'dummy'
c.DummyAuthenticator.password = 'local-pw'
c.Authenticator.allow_all = True
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 2
c.JupyterHub.concurrent_spawn_limit = 10
c.JupyterHub.active_server_limit = 50
c.JupyterHub.spawner_class = 'jupyterhub.spawner.LocalProcessSpawner'
c.Spawner.mem_limit = '2G'
c.Spawner.cpu_limit = 1.5
c.Spawner.default_url = '/lab'
c.Spawner.notebook_dir = '~'
c.Spawner.environment = {'OMP_NUM_THREADS': '1', 'SITE': 'test'}
c.Spawner.environment.update({'EXTRA': 'yes'})
c.Spawner.env_keep.append('TZ')
c.Spawner.args = ['--ServerApp.shutdown_no_activity_timeout=3600']
c.LocalProcessSpawner.term_timeout = 10
