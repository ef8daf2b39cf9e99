#!/usr/bin/env bash
# Writes "<service> <main pid> <version> <epoch> <state> <LDS updates>" of every
# Envoy sidecar of this host, one line each, to the file named by $1.
set -euo pipefail
for dir in /run/envoy/*/; do
    service=$(basename "$dir")
    admin=$(cat "$dir/admin")
    lds=$(curl -sf -m 5 "http://$admin/stats?filter=^listener_manager.lds.update_success$" | cut -d: -f2)
    curl -sf -m 5 "http://$admin/server_info" | python3 -c '
import json, sys
info = json.load(sys.stdin)
print(sys.argv[1], sys.argv[2], info["version"].split("/")[1], info["command_line_options"]["restart_epoch"],
      info["state"], sys.argv[3].strip())
' "$service" "$(systemctl show -P MainPID "envoy@$service")" "$lds"
done > "$1"
