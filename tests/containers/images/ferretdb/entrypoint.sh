#!/bin/bash
# FerretDB started as the official mongo image starts mongod, so testcontainers' MongoDbContainer drives it:
# mongod's --bind_ip and --port (the fixture's host-network mode passes them), the root user of
# MONGO_INITDB_ROOT_USERNAME / _PASSWORD (FerretDB's SCRAM-SHA-256 authentication, user in admin), and
# mongod's "Waiting for connections" line once the port accepts connections (testcontainers waits for it).
set -euo pipefail

host=0.0.0.0
port=27017
while (($#)); do
    case $1 in
    --bind_ip) host=$2 && shift 2 ;;
    --bind_ip=*) host=${1#*=} && shift ;;
    --port) port=$2 && shift 2 ;;
    --port=*) port=${1#*=} && shift ;;
    *)
        echo "kfaas-ferretdb: unsupported argument $1 (only --bind_ip and --port)" >&2
        exit 2
        ;;
    esac
done

args=(--handler=sqlite --sqlite-url=file:/data/db/ --state-dir=/data/state --listen-addr="$host:$port"
    --telemetry=disable --debug-addr=-)
if [[ -n ${MONGO_INITDB_ROOT_USERNAME:-} ]]; then
    args+=(--test-enable-new-auth --setup-database=admin --setup-username="$MONGO_INITDB_ROOT_USERNAME"
        --setup-password="${MONGO_INITDB_ROOT_PASSWORD:?MONGO_INITDB_ROOT_PASSWORD must be set with the user}")
fi

ferretdb "${args[@]}" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT

probe=$host
[[ $probe == 0.0.0.0 ]] && probe=127.0.0.1
until (exec 3<>"/dev/tcp/$probe/$port") 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || wait "$pid"
    sleep 0.2
done
printf '{"msg":"Waiting for connections","attr":{"listenAddr":"%s","port":%s}}\n' "$host" "$port"

# wait returns early when the trap runs: then wait for FerretDB to finish its shutdown
wait "$pid" || wait "$pid"
