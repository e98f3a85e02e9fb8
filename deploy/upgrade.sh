#!/usr/bin/env bash
# Upgrade a Bastion installation: stop, back up, pip install, migrate, check, start.
#
# Run as root, for example with a checkout of the new version in /opt/bastion/src:
#   /opt/bastion/src/deploy/upgrade.sh -- '/opt/bastion/src[postgresql]'
# The backup it takes first holds secrets; see backup.sh.
set -euo pipefail

PROG=$(basename "$0")
HERE=$(cd "$(dirname "$0")" && pwd)

usage() {
    cat <<EOF
Usage: $PROG [options] [--] PIP_ARGS...

Stops Bastion, backs it up (backup.sh), runs \`pip install --upgrade PIP_ARGS\` in
Bastion's virtual environment, then \`bastion upgrade\` and \`bastion check\` as the
service user, starts Bastion again and waits until it answers /readyz.

PIP_ARGS say what to install, for example:
  '/opt/bastion/src[postgresql]'            a checkout of the new version
  ./bastion_crm-0.2.0-py3-none-any.whl      a wheel
  --no-index --find-links /srv/wheels 'bastion-crm[postgresql]==0.2.0'
                                            an air-gapped wheelhouse
Name upgraded plugin distributions in the same command.

Options:
  -V VENV        Bastion's virtual environment (default: /opt/bastion/venv)
  -d DATA_DIR    data directory (default: \$BASTION_DATA_DIR or /var/lib/bastion)
  -e ENV_FILE    environment file the service reads
                 (default: /etc/bastion/bastion.env, skipped if missing)
  -u USER        user the service runs as (default: bastion)
  -s UNITS       systemd units to stop and start, space separated
                 (default: "bastion"; e.g. "bastion@8000 bastion@8001")
  -o BACKUP_DIR  where backup.sh writes (default: /var/backups/bastion)
  -r URL         readiness URL to wait for after the start
                 (default: http://127.0.0.1:8000/readyz; "" skips the wait)
  -B             skip the backup (not recommended: there is no way back without one)
  -h             show this help

If anything fails before pip runs, Bastion is started again unchanged. If it fails
later, the units stay stopped and the steps to roll back are printed.
EOF
}

die() {
    echo "$PROG: $*" >&2
    exit 1
}

venv=/opt/bastion/venv
data_dir=""
env_file=/etc/bastion/bastion.env
service_user=bastion
units=bastion
backup_dir=/var/backups/bastion
ready_url=http://127.0.0.1:8000/readyz
do_backup=yes

while getopts ":V:d:e:u:s:o:r:Bh" opt; do
    case "$opt" in
        V) venv=$OPTARG ;;
        d) data_dir=$OPTARG ;;
        e) env_file=$OPTARG ;;
        u) service_user=$OPTARG ;;
        s) units=$OPTARG ;;
        o) backup_dir=$OPTARG ;;
        r) ready_url=$OPTARG ;;
        B) do_backup=no ;;
        h) usage; exit 0 ;;
        :) usage >&2; die "option -$OPTARG needs a value." ;;
        *) usage >&2; die "unknown option -$OPTARG." ;;
    esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { usage >&2; die "say what to install (PIP_ARGS)."; }

[ "$(id -u)" -eq 0 ] || die "run this as root (it installs into $venv and restarts $units)."
id "$service_user" >/dev/null 2>&1 || die "there is no user $service_user."
[ -x "$venv/bin/bastion" ] || die "$venv/bin/bastion not found; pass the venv with -V."
command -v runuser >/dev/null || die "runuser (util-linux) is needed."
read -r -a unit_list <<<"$units"
if [ ${#unit_list[@]} -gt 0 ]; then
    command -v systemctl >/dev/null || die "systemctl not found; pass -s '' to manage the processes yourself."
fi

umask 022
cd /

# The same environment the service gets, for `bastion upgrade` and `bastion check`.
if [ -r "$env_file" ]; then
    set -a
    # shellcheck disable=SC1090
    . "$env_file"
    set +a
fi
if [ -n "$data_dir" ]; then
    export BASTION_DATA_DIR="$data_dir"
else
    export BASTION_DATA_DIR="${BASTION_DATA_DIR:-/var/lib/bastion}"
fi

as_service_user() {
    runuser -u "$service_user" -- "$@"
}

old_version=$("$venv/bin/bastion" --version)
stage=start

on_exit() {
    local status=$?
    [ "$status" -ne 0 ] || return 0
    case "$stage" in
        start) ;;
        stopped)
            echo "$PROG: failed before installing anything; starting ${units:-nothing} again." >&2
            [ ${#unit_list[@]} -eq 0 ] || systemctl start "${unit_list[@]}" || true
            ;;
        starting)
            cat >&2 <<EOF
$PROG: the new version is installed and migrated, but ${units:-it} did not start or
did not become ready. Read the log (journalctl -u bastion), fix the cause and start
it again; to go back instead, stop it and follow the roll-back steps in
deploy/PRODUCTION.md ("Upgrades") with the backup in $backup_dir.
EOF
            ;;
        *)
            cat >&2 <<EOF
$PROG: the upgrade failed after pip started; ${units:-the processes} stay stopped.
Was: $old_version. To roll back:
  1. $venv/bin/pip install --force-reinstall <the previous version, e.g. 'bastion-crm==${old_version##* }'>
  2. restore the backup from $backup_dir (deploy/PRODUCTION.md, "Restore"),
     because \`bastion upgrade\` may already have migrated the database;
  3. run \`bastion check\` as $service_user, then start ${units:-the processes}.
Or fix the cause shown above and run $PROG again.
EOF
            ;;
    esac
}
trap on_exit EXIT

echo "Installed: $old_version"

if [ ${#unit_list[@]} -gt 0 ]; then
    echo "Stopping ${units}..."
    systemctl stop "${unit_list[@]}"
fi
stage=stopped

if [ "$do_backup" = yes ]; then
    install -d -m 0700 -o "$service_user" -g "$(id -gn "$service_user")" "$backup_dir"
    as_service_user "$HERE/backup.sh" -d "$BASTION_DATA_DIR" -o "$backup_dir" \
        -e "$env_file" -p "$venv/bin/python"
else
    echo "Skipping the backup (-B)."
fi

stage=installing
echo "Installing: pip install --upgrade $*"
"$venv/bin/pip" install --upgrade "$@"
"$venv/bin/pip" check || echo "$PROG: warning: pip reports dependency conflicts (above)." >&2

stage=migrating
as_service_user "$venv/bin/bastion" upgrade
as_service_user "$venv/bin/bastion" check

stage=starting
if [ ${#unit_list[@]} -gt 0 ]; then
    echo "Starting ${units}..."
    systemctl start "${unit_list[@]}"
fi

if [ -n "$ready_url" ] && [ ${#unit_list[@]} -gt 0 ]; then
    echo "Waiting for $ready_url..."
    "$venv/bin/python" - "$ready_url" <<'PY'
import sys
import time
import urllib.error
import urllib.request

url = sys.argv[1]
deadline = time.monotonic() + 60
while True:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                break
    except (urllib.error.URLError, OSError):
        pass
    if time.monotonic() > deadline:
        sys.exit(f"{url} did not answer 200 within 60 seconds; see journalctl -u bastion.")
    time.sleep(1)
PY
fi

stage=finished
echo "Upgraded: $old_version -> $("$venv/bin/bastion" --version)"
