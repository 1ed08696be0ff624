"""``--plugin testkit.remote_endpoint``: no address counts as loopback in this run, so the test
server on 127.0.0.1 stands for a remote endpoint (there is no remote server in a test)."""

from dslrun.runtime import endpoints

endpoints.is_loopback = lambda host: False
