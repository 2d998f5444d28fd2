"""A config file that sets every table, shared by test_config_load and test_config_output."""

from __future__ import annotations

FULL_EXAMPLE = """\
app = "myproject.asgi:create_app()"

[server]
workers = 4
worker_mode = "process"
root_path = "/api"
backlog = 1024
factory = true

[[listen]]
host = "0.0.0.0"
port = 8080

[[listen]]
host = "::1"

[[listen]]
port = 9000
backlog = 16

[[listen]]
path = "/run/pounce.sock"
mode = 0o660
owner = "www-data"
group = "1000"

[[listen]]
fd = 3

[[listen]]
name = "web"

[http]
keep_alive_timeout = 15
header_timeout = 2.5
max_header_size = 32768
max_body_size = 0
max_requests_per_connection = 1000

[shutdown]
timeout = 0
drain_delay = 2.5

[logging]
level = "debug"
access_log = false
format = "json"
file = "/var/log/pounce.log"

[workers]
max_restarts = 0
restart_window = 120
timeout = 10.5
heartbeat_interval = 0.25

[reload]
max_surge = 2
timeout = 90

[control]
socket = "/run/pounce/ctl.sock"

[admin]
host = "::"
port = 9100

[health]
live_path = "/livez"
ready_path = "/readyz"
public = true

[metrics]
enabled = false
path = "/_/metrics"
public = true
"""
