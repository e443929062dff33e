# wrapspawner's ProfilesSpawner: a menu of Slurm profiles, one per partition.
c = get_config()

c.JupyterHub.spawner_class = 'wrapspawner.ProfilesSpawner'
c.JupyterHub.authenticator_class = 'dummy'
c.DummyAuthenticator.password = 'profiles-pw'
c.Authenticator.allow_all = True

c.Spawner.http_timeout = 120
c.BatchSpawnerBase.exec_prefix = ''

c.ProfilesSpawner.profiles = [
    ('Quick test (30 min)', 'devel', 'batchspawner.SlurmSpawner',
     dict(req_partition='devel', req_runtime='00:30:00', req_nprocs='1')),
    ("Batch node, up to 2 hours", 'batch2h', 'batchspawner.SlurmSpawner',
     dict(req_partition='batch', req_runtime='2:00:00', req_nprocs='1')),
    ('GPU node', 'gpu', 'batchspawner.SlurmSpawner',
     dict(req_partition='gpu', req_runtime='1:00:00', req_nprocs='1', req_options='--gres=gpu:1')),
    ('Local server on the hub', 'local', 'jupyterhub.spawner.LocalProcessSpawner', {}),
]
c.ProfilesSpawner.default_profile = 'devel'
