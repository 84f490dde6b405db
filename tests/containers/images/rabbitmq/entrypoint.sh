#!/bin/bash
# Debian's rabbitmq-server started as the official image starts it, so testcontainers' RabbitMqContainer
# drives it: the user, password and vhost of RABBITMQ_DEFAULT_USER / _PASS / _VHOST; RabbitMQ's own
# variables (RABBITMQ_NODE_PORT, RABBITMQ_NODENAME, ERL_EPMD_PORT, ...) as the server reads them; logs on
# stdout. Clients may connect from any address, as in the official image (loopback_users = none).
set -euo pipefail

conf=$HOME/kfaas-rabbitmq.conf
{
    echo "default_user = ${RABBITMQ_DEFAULT_USER:-guest}"
    echo "default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}"
    echo "default_vhost = ${RABBITMQ_DEFAULT_VHOST:-/}"
    echo "loopback_users = none"
} >"$conf"
export RABBITMQ_CONFIG_FILE=$conf
cd "$HOME"
exec /usr/lib/rabbitmq/bin/rabbitmq-server
