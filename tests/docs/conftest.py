def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: runs the demo or the by-hand recipe (builds the function if needed)")
