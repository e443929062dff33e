c = get_config()
c.Spawner.default_url = "/lab
