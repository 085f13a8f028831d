#!/usr/bin/env bash
# Form `overlays` (README.md): a self-extending COMPOSE_FILE with two overlays.
set -euo pipefail
w="$1"
python3 - "$w/.env.sample" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
s = s.replace('COMPOSE_FILE="compose.yml"\n', '''COMPOSE_FILE="compose.yml"

## Database (a second service, its own volume)
COMPOSE_FILE="$COMPOSE_FILE:compose.db.yml"

## Outgoing mail
COMPOSE_FILE="$COMPOSE_FILE:compose.mail.yml"
SMTP_HOST=mail.example.com
''')
open(p, "w").write(s)
PY
cat >"$w/compose.db.yml" <<'YML'
---
version: "3.8"
services:
  app:
    environment:
      - DB_HOST=${STACK_NAME}_db
  db:
    image: ccci-example:1.0.0
    volumes:
      - db_data:/data
    healthcheck:
      test: ["CMD", "/server", "--version"]
      interval: 5s
      timeout: 3s
      retries: 3
      start_period: 20s
    # No restart policy and no stop grace period, as public recipes' db
    # services mostly have: the engine's service view shows its defaults.
    deploy:
      labels:
        backupbot.backup: "${ENABLE_BACKUPS:-true}"
        backupbot.backup.path: "/data"
volumes:
  db_data:
YML
cat >"$w/compose.mail.yml" <<'YML'
---
version: "3.8"
services:
  app:
    environment:
      - SMTP_HOST
      - SMTP_PORT=${SMTP_PORT:-587}
YML
