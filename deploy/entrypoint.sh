#!/bin/sh
# The image's commands: web | worker | beat | migrate | manage <args> | anything else (run as is).
set -eu
case "${1:-web}" in
  web)
    shift || true
    exec gunicorn etl_monitor.wsgi --config deploy/gunicorn.conf.py --bind "0.0.0.0:${WEB_PORT:-8000}" "$@"
    ;;
  worker)
    shift
    exec celery --app etl_monitor worker --loglevel "${LOG_LEVEL:-INFO}" --without-gossip --without-mingle "$@"
    ;;
  beat)
    shift
    # The schedule lives in the database (CELERY_BEAT_SCHEDULER); nothing is written to the filesystem.
    exec celery --app etl_monitor beat --loglevel "${LOG_LEVEL:-INFO}" "$@"
    ;;
  migrate)
    shift
    exec python3 manage.py migrate --noinput "$@"
    ;;
  manage)
    shift
    exec python3 manage.py "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
