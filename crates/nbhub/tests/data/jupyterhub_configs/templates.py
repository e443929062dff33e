# A site's own page templates and variables.
c = get_config()

c.JupyterHub.authenticator_class = 'dummy'
c.DummyAuthenticator.password = 'tpl-pw'
c.Authenticator.allowed_users = {'carol'}
c.Authenticator.admin_users = {'carol'}
c.JupyterHub.template_paths = ['/srv/jupyterhub/templates']
c.JupyterHub.template_vars = {'announcement_login': 'Maintenance on Friday', 'site': 'HPC Centre'}
c.JupyterHub.shutdown_on_logout = True
