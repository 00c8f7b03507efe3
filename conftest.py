pytest_plugins = ["parity.plugin"]
