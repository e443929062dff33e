# Sign-in through the institute's Keycloak with GenericOAuthenticator; groups decide access.
from oauthenticator.generic import GenericOAuthenticator

c = get_config()

c.JupyterHub.authenticator_class = GenericOAuthenticator
c.GenericOAuthenticator.client_id = "jupyterhub"
c.GenericOAuthenticator.client_secret = "s3cr3t-from-keycloak"
c.GenericOAuthenticator.oauth_callback_url = "https://jupyter.example.org/hub/oauth_callback"
KC = "https://login.example.org/realms/hpc/protocol/openid-connect"
c.GenericOAuthenticator.authorize_url = KC + "/auth"
c.GenericOAuthenticator.token_url = KC + "/token"
c.GenericOAuthenticator.userdata_url = KC + "/userinfo"
c.GenericOAuthenticator.scope = ["openid", "profile", "groups"]
c.GenericOAuthenticator.username_claim = "preferred_username"
c.GenericOAuthenticator.login_service = "HPC Login"
c.GenericOAuthenticator.claim_groups_key = "groups"
c.GenericOAuthenticator.allowed_groups = ["hpc"]
c.GenericOAuthenticator.admin_groups = ["admins"]
c.GenericOAuthenticator.manage_groups = True
c.GenericOAuthenticator.enable_auth_state = True
c.GenericOAuthenticator.tls_verify = False
c.OAuthenticator.extra_authorize_params = {"kc_idp_hint": "ldap"}
