# pytester: tests/harness/test_run_folders.py runs the plugin on a throwaway project, in process.
pytest_plugins = ["parity.pytest.plugin", "pytester", "tests.support.prepared"]
